#!/usr/bin/env bash
# Build and deploy the chatbox stack with AWS SAM.
#
#   infra/deploy.sh dev                 # parameters from infra/params/dev.json, stack chatbox-dev
#   STACK=my-chatbox infra/deploy.sh dev
#   SAM=samlocal infra/deploy.sh dev    # LocalStack (see infra/localstack/README.md)
#
# Needs the AWS SAM CLI and a python3.12 first on PATH (`sam build` builds the layer with it, no
# container). When the parameters leave PublicUrl empty, the stack is deployed a second time with
# PublicUrl set to the API's own URL (the functions cannot reference the API they sit behind: that
# would be a dependency cycle), so mcp_url, ingest_url and the MCP Host check are right.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVIRONMENT="${1:?usage: infra/deploy.sh <environment> (a file infra/params/<environment>.json)}"
PARAMS="infra/params/${ENVIRONMENT}.json"
STACK="${STACK:-chatbox-${ENVIRONMENT}}"
SAM="${SAM:-sam}"

overrides() {  # the JSON object as one `Key="Value" ...` string (SAM's format), plus any Key=Value given
    python3 - "$PARAMS" "$@" <<'PY'
import json, sys
values = {k: str(v) for k, v in json.load(open(sys.argv[1])).items()}
for extra in sys.argv[2:]:
    key, value = extra.split("=", 1)
    values[key] = value
print(" ".join(f'{k}="{v}"' for k, v in values.items() if v != ""))
PY
}

deploy() {
    "$SAM" deploy --stack-name "$STACK" --resolve-s3 --no-fail-on-empty-changeset \
        --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
        --parameter-overrides "$(overrides "$@")"
}

"$SAM" build --template-file template.yaml
deploy

public_url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("PublicUrl", ""))' "$PARAMS")"
if [ -z "$public_url" ]; then
    api_url="$(aws ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} cloudformation describe-stacks \
        --stack-name "$STACK" --query "Stacks[0].Outputs[?OutputKey=='ApiUrl'].OutputValue" --output text)"
    echo "PublicUrl was empty: deploying again with PublicUrl=${api_url}"
    deploy "PublicUrl=${api_url}"
fi
"$SAM" list stack-outputs --stack-name "$STACK" --output table 2>/dev/null || true
