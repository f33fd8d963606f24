"""template.yaml: linted, translated offline to CloudFormation, created in moto, and its wiring asserted.

moto creates the queues, functions, roles, layer, event source mapping, schedule and ECS resources;
it does not create `AWS::ApiGatewayV2::*` (nor CloudWatch alarms from a template), so routes and the
alarm are asserted on the template itself. The handlers themselves are driven in-process by
test_lambda_api.py, test_lambda_inbound.py, test_lambda_mcp.py and test_pipeline_sqs.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode_str
from moto import mock_aws
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ARTIFACTS = "chatbox-artifacts"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:chatbox/{}-AbCdEf"
REQUIRED = {"VaultKeySecretArn": SECRET.format("vault"), "DatabaseUrlSecretArn": SECRET.format("db")}

Template = dict[str, Any]

# moto warns about each resource type it does not implement; that is the documented limit, not news.
moto_partial_cloudformation = pytest.mark.filterwarnings(
    "ignore:Tried to parse AWS..ApiGatewayV2..:UserWarning",
    "ignore:Tried to parse AWS..CloudWatch..Alarm:UserWarning",
)


def sam_template() -> Template:
    """template.yaml as a plain dict (short-form intrinsics like !Ref expanded)."""
    template, problems = decode_str(TEMPLATE.read_text())
    assert not problems, problems
    plain: Template = json.loads(json.dumps(template, default=str))
    return plain


def resources_of(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def translate(parameters: dict[str, str]) -> Template:
    """The SAM template as plain CloudFormation, offline: code locations become s3:// URIs first."""
    template = sam_template()
    for name, resource in template["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://{ARTIFACTS}/{name}.zip"
    translated: Template = Translator(
        managed_policy_map={}, sam_parser=Parser(), boto_session=boto3.Session(region_name=REGION)
    ).translate(sam_template=template, parameter_values=dict(parameters))
    return translated


@dataclass
class Stack:
    name: str
    resources: dict[str, tuple[str, str]]  # logical id -> (type, physical id)

    def physical(self, logical_id: str) -> str:
        return self.resources[logical_id][1]

    def of_type(self, kind: str) -> list[str]:
        return [physical for (rtype, physical) in self.resources.values() if rtype == kind]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def create_stack(parameters: dict[str, str]) -> Stack:
    translated = translate(parameters)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=ARTIFACTS)
    for name in sam_template()["Resources"]:
        s3.put_object(Bucket=ARTIFACTS, Key=f"{name}.zip", Body=b"PK\x05\x06" + bytes(18))  # an empty zip
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName="chatbox",
        TemplateBody=json.dumps(translated),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    [stack] = cloudformation.describe_stacks(StackName="chatbox")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    summaries = cloudformation.list_stack_resources(StackName="chatbox")["StackResourceSummaries"]
    return Stack(
        "chatbox",
        {s["LogicalResourceId"]: (s["ResourceType"], s.get("PhysicalResourceId", "")) for s in summaries},
    )


def test_cfn_lint_is_clean() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"

    result = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stdout + result.stderr


def test_http_routes_reach_the_function_that_serves_them() -> None:
    routes = {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"]): name
        for name, function in resources_of(sam_template(), "AWS::Serverless::Function").items()
        for event in function["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    }

    assert routes == {
        ("GET", "/health"): "ApiFunction",
        ("GET", "/metrics"): "ApiFunction",
        ("ANY", "/v1/{proxy+}"): "ApiFunction",
        ("POST", "/v1/connections/{connection_id}/messages"): "InboundFunction",
        ("POST", "/v1/ingest/{proxy+}"): "InboundFunction",
        ("ANY", "/mcp/{mailbox_id}"): "McpFunction",
        ("ANY", "/mcp/{proxy+}"): "McpFunction",
    }
    for function in resources_of(sam_template(), "AWS::Serverless::Function").values():
        for event in function["Properties"]["Events"].values():
            if event["Type"] == "HttpApi":
                assert event["Properties"]["ApiId"] == {"Ref": "HttpApi"}


def test_every_function_ships_only_its_own_folder_and_the_chatbox_layer() -> None:
    template = sam_template()
    functions = resources_of(template, "AWS::Serverless::Function")

    assert {name: f["Properties"]["CodeUri"] for name, f in functions.items()} == {
        "ApiFunction": "functions/api/",
        "InboundFunction": "functions/inbound/",
        "McpFunction": "functions/mcp/",
        "DeliveryFunction": "functions/delivery/",
    }
    assert all(f["Properties"]["Handler"] == "handler.handler" for f in functions.values())
    assert template["Globals"]["Function"]["Layers"] == [{"Ref": "ChatboxLayer"}]
    layer = template["Resources"]["ChatboxLayer"]
    assert layer["Properties"]["ContentUri"] == "./"
    assert layer["Metadata"]["BuildMethod"] == "makefile"  # ships shared/chatbox and connectors/ together
    assert template["Globals"]["Function"]["Runtime"] == "python3.12"
    assert "build-ChatboxLayer:" in (ROOT / "Makefile").read_text()
    assert (ROOT / "shared" / "requirements.txt").is_file()
    for name in ("signal", "discord"):
        assert (ROOT / "connectors" / name / "Dockerfile").is_file()


def test_dead_letter_alarm_watches_the_dead_letter_queue() -> None:
    [alarm] = resources_of(sam_template(), "AWS::CloudWatch::Alarm").values()

    assert alarm["Properties"]["Namespace"] == "AWS/SQS"
    assert alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Properties"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeliveryDeadLetterQueue", "QueueName"]}}
    ]
    assert alarm["Properties"]["Threshold"] == 0
    assert alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"


def test_functions_get_secrets_by_arn_never_as_values() -> None:
    variables = sam_template()["Globals"]["Function"]["Environment"]["Variables"]

    assert variables["CHATBOX_VAULT_KEY_SECRET_ARN"] == {"Ref": "VaultKeySecretArn"}
    assert "CHATBOX_VAULT_KEY" not in variables and "CHATBOX_DB_URL" not in variables
    assert variables["CHATBOX_QUEUE"] == "sqs"


def test_the_database_variant_translates_with_aurora_and_its_generated_secret() -> None:
    # moto cannot create an Aurora Serverless v2 instance, so this variant stops at translation.
    translated = translate({**REQUIRED, "CreateDatabase": "true", "VpcId": "vpc-1", "PrivateSubnetIds": "subnet-1"})

    resources = translated["Resources"]
    assert resources["DatabaseCluster"]["Condition"] == "CreateAurora"
    assert resources["DatabaseCluster"]["Properties"]["Engine"] == "aurora-postgresql"
    assert "ServerlessV2ScalingConfiguration" in resources["DatabaseCluster"]["Properties"]
    assert resources["DatabaseInstance"]["Properties"]["DBInstanceClass"] == "db.serverless"
    assert resources["DatabaseSecretAttachment"]["Properties"]["TargetType"] == "AWS::RDS::DBCluster"


@moto_partial_cloudformation
def test_stack_creates_with_every_work_queue_redriven_to_a_fifo_dead_letter_queue(aws: None) -> None:
    stack = create_stack(REQUIRED)

    sqs = boto3.client("sqs", region_name=REGION)
    queues = {
        url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for url in stack.of_type("AWS::SQS::Queue")
    }
    dead_letter_arns = {
        json.loads(a["RedrivePolicy"])["deadLetterTargetArn"] for a in queues.values() if "RedrivePolicy" in a
    }
    work_queues = {url: a for url, a in queues.items() if a["QueueArn"] not in dead_letter_arns}
    assert work_queues and dead_letter_arns
    for attributes in work_queues.values():
        redrive = json.loads(attributes["RedrivePolicy"])
        [dead_letter] = [a for a in queues.values() if a["QueueArn"] == redrive["deadLetterTargetArn"]]
        assert int(redrive["maxReceiveCount"]) >= 5
        assert attributes.get("FifoQueue") == dead_letter.get("FifoQueue") == "true"


@moto_partial_cloudformation
def test_every_sqs_event_source_reports_batch_item_failures_within_the_visibility_timeout(aws: None) -> None:
    stack = create_stack({**REQUIRED, "DeliveryBatchSize": "7", "DeliveryMaximumConcurrency": "3"})

    lambda_client = boto3.client("lambda", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    mappings = lambda_client.list_event_source_mappings()["EventSourceMappings"]
    assert mappings
    for mapping in mappings:
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BatchSize"] == 7
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": 3}
        queue_name = mapping["EventSourceArn"].rsplit(":", 1)[1]
        url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        visibility = int(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"][
                "VisibilityTimeout"
            ]
        )
        timeout = lambda_client.get_function_configuration(FunctionName=mapping["FunctionArn"])["Timeout"]
        assert visibility >= 6 * timeout, (queue_name, visibility, timeout)
    assert stack.of_type("AWS::Lambda::EventSourceMapping")


@moto_partial_cloudformation
def test_functions_get_queue_urls_secret_arns_and_the_layer(aws: None) -> None:
    stack = create_stack(REQUIRED)

    lambda_client = boto3.client("lambda", region_name=REGION)
    for logical in ("ApiFunction", "InboundFunction", "McpFunction", "DeliveryFunction"):
        config = lambda_client.get_function_configuration(FunctionName=stack.physical(logical))
        variables = config["Environment"]["Variables"]
        assert config["Runtime"] == "python3.12" and config["Handler"] == "handler.handler"
        assert variables["CHATBOX_SQS_QUEUE_URL"] == stack.physical("DeliveryQueue")
        assert variables["CHATBOX_SQS_DEAD_LETTER_QUEUE_URL"] == stack.physical("DeliveryDeadLetterQueue")
        assert variables["CHATBOX_VAULT_KEY_SECRET_ARN"] == REQUIRED["VaultKeySecretArn"]
        assert variables["CHATBOX_DB_URL_SECRET_ARN"] == REQUIRED["DatabaseUrlSecretArn"]
    assert stack.of_type("AWS::Lambda::LayerVersion")  # moto does not report it on the functions


@moto_partial_cloudformation
def test_the_sweeper_schedule_invokes_the_delivery_function(aws: None) -> None:
    stack = create_stack({**REQUIRED, "SweepSchedule": "rate(2 minutes)"})

    events = boto3.client("events", region_name=REGION)
    [rule_name] = stack.of_type("AWS::Events::Rule")
    rule = events.describe_rule(Name=rule_name)
    [target] = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    assert rule["ScheduleExpression"] == "rate(2 minutes)"
    assert target["Arn"].endswith(stack.physical("DeliveryFunction"))


def test_iam_is_least_privilege_per_function() -> None:
    # Asserted on the translated template: the SAM policy templates expanded, as CloudFormation receives them.
    roles = resources_of(translate(REQUIRED), "AWS::IAM::Role")

    def actions(logical_role: str) -> set[str]:
        found: set[str] = set()
        for policy in roles[logical_role]["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Resource"] != "*", (logical_role, statement)
                listed = statement["Action"]
                found.update([listed] if isinstance(listed, str) else listed)
        return found

    def sqs_actions(logical_role: str) -> set[str]:
        return {action for action in actions(logical_role) if action.startswith("sqs:")}

    assert set(roles) >= {"ApiFunctionRole", "InboundFunctionRole", "McpFunctionRole", "DeliveryFunctionRole"}
    assert "secretsmanager:GetSecretValue" in actions("McpFunctionRole")
    assert sqs_actions("McpFunctionRole") == set()
    assert sqs_actions("InboundFunctionRole") == sqs_actions("ApiFunctionRole") == {"sqs:SendMessage*"}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage*"} <= (
        sqs_actions("DeliveryFunctionRole")
    )


@moto_partial_cloudformation
def test_vpc_variant_runs_signal_and_discord_containers_pointed_at_the_api(aws: None) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc_id = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = [subnet["SubnetId"] for subnet in ec2.describe_subnets()["Subnets"]][:2]
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/chatbox-{}:1"
    stack = create_stack(
        {
            **REQUIRED,
            "VpcId": vpc_id,
            "PrivateSubnetIds": ",".join(subnets),
            "PublicUrl": "https://chatbox.example.com",
            "SignalImageUri": image.format("signal"),
            "SignalConnectorSecretArn": SECRET.format("signal"),
            "DiscordImageUri": image.format("discord"),
            "DiscordConnectorSecretArn": SECRET.format("discord"),
        }
    )

    ecs = boto3.client("ecs", region_name=REGION)
    cluster = stack.physical("ContainerCluster")
    services = ecs.describe_services(cluster=cluster, services=stack.of_type("AWS::ECS::Service"))["services"]
    assert len(services) == 2
    for family in ("signal", "discord"):
        definition = ecs.describe_task_definition(taskDefinition=f"chatbox-{family}")["taskDefinition"]
        [container] = definition["containerDefinitions"]
        assert container["image"] == image.format(family)
        assert {"name": "CHATBOX_API_URL", "value": "https://chatbox.example.com"} in container["environment"]
        assert {s["name"] for s in container["secrets"]} >= {"CHATBOX_CONNECTION_ID", "CHATBOX_INBOUND_TOKEN"}
    # moto keeps neither the launch type nor the network mode: those are asserted on the template.
    template = sam_template()["Resources"]
    for family in ("Signal", "Discord"):
        task, service = template[f"{family}TaskDefinition"]["Properties"], template[f"{family}Service"]["Properties"]
        assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
        assert service["LaunchType"] == "FARGATE"
        # One platform session at a time: a deployment stops the old task before starting the new one.
        assert service["DeploymentConfiguration"]["MaximumPercent"] == 100
    config = boto3.client("lambda", region_name=REGION).get_function_configuration(
        FunctionName=stack.physical("DeliveryFunction")
    )
    assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(subnets)


@pytest.mark.parametrize("function", ["api", "inbound", "delivery"])
def test_functions_other_than_mcp_never_import_the_mcp_sdk(function: str, tmp_path: Path) -> None:
    # A fresh interpreter, as a cold start: `mcp` alone costs about a second to import.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHATBOX_")},
        "CHATBOX_DB_URL": f"sqlite:///{tmp_path / 'cold.db'}",
        "CHATBOX_VAULT_KEY": "A" * 43 + "=",
        "CHATBOX_HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "shared")]),
    }
    probe = (
        f"import sys, functions.{function}.handler; print(sorted(m for m in sys.modules if m.split('.')[0] == 'mcp'))"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("params_file", sorted((ROOT / "infra" / "params").glob("*.json")), ids=lambda p: p.stem)
def test_parameter_files_name_only_template_parameters_and_give_the_required_ones(params_file: Path) -> None:
    declared = sam_template()["Parameters"]
    given: dict[str, str] = json.loads(params_file.read_text())

    assert set(given) <= set(declared), set(given) - set(declared)
    assert given["VaultKeySecretArn"].startswith("arn:aws:secretsmanager:")
    assert given.get("DatabaseUrlSecretArn") or given.get("CreateDatabase") == "true"
    for name, value in given.items():
        allowed = declared[name].get("AllowedValues")
        assert allowed is None or value in [str(a) for a in allowed], (name, value)
