#!/usr/bin/env bash
# Build and deploy the chatbox stack with AWS SAM.
#
#   infra/deploy.sh dev                 # parameters from infra/params/dev.json, stack chatbox-dev
#   STACK=my-chatbox infra/deploy.sh dev
#   SAM=samlocal infra/deploy.sh dev    # LocalStack (see infra/localstack/README.md)
#
# Needs the AWS SAM CLI, the AWS CLI and a python3.12 (PYTHON312, default python3.12 on PATH): `make layer`
# builds the layers (infra/layers.toml) from requirements.lock with 3.12 bytecode, no container. One deploy is
# enough: with PublicUrl empty the functions take the API's domain from API Gateway's request context; the deploy's
# migrate step brings the schema to head and, on the first deploy, creates the first account (its key:
# the BootstrapApiKeySecretArn output, see infra/README.md).
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

make layer
"$SAM" build --template-file template.yaml
deploy
"$SAM" list stack-outputs --stack-name "$STACK" --output table 2>/dev/null || true
