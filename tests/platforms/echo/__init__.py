"""Echo: a throwaway webhook-mode platform, built only against chatbox's ports (no core file knows it).

Its "platform API" is a plain HTTP service (a stand-in in the test): `GET {api_url}/me` checks the
connection's api_key, `POST {api_url}/send` sends. Its webhooks carry `X-Echo-Token`, the token chatbox
got from `provision`, and a JSON body `{"update": n, "chat": "...", "from": "...", "text": "..."}`.
"""
