"""Programs that run beside chatbox, not part of it: integrations a harness author can copy and adapt."""
