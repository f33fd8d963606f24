"""template.yaml: linted, translated offline to CloudFormation, created in moto, and its wiring asserted.

moto creates the queues, functions, roles, layer, event source mapping, schedule and ECS resources;
it does not create `AWS::ApiGatewayV2::*` (nor CloudWatch alarms from a template), so routes and the
alarm are asserted on the template itself. The handlers themselves are driven in-process by
test_lambda_api.py, test_lambda_inbound.py, test_lambda_mcp.py and test_pipeline_sqs.py.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode_str
from moto import mock_aws
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "infra"))
import build_layers  # noqa: E402 - infra/ holds build scripts, not a package
import check_layer  # noqa: E402

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
    "ignore:Tried to parse AWS..SecretsManager..Secret:UserWarning",
    "ignore:Tried to parse AWS..Logs..LogGroup:UserWarning",
    "ignore:Tried to parse AWS..ServiceDiscovery..:UserWarning",
    "ignore:Tried to parse AWS..EFS..:UserWarning",
    "ignore:Tried to parse AWS..Lambda..Permission:UserWarning",
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


def without_custom_resources(translated: Template) -> Template:
    """The template minus its custom resources (the migrate step), which moto would run by invoking Lambda code:
    it cannot without Docker. Their wiring is asserted on the translated template instead."""
    custom = {name for name, res in translated["Resources"].items() if res["Type"].startswith("Custom::")}
    for name in custom:
        del translated["Resources"][name]
    for resource in translated["Resources"].values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str) and depends in custom:
            del resource["DependsOn"]
        elif isinstance(depends, list):
            resource["DependsOn"] = [name for name in depends if name not in custom]
    return translated


def without_service_discovery(translated: Template) -> Template:
    """The template minus Cloud Map (moto's CloudFormation cannot create AWS::ServiceDiscovery::*) and the ECS
    services' registrations with it; both are asserted on the template instead."""
    for name in [n for n, res in translated["Resources"].items() if res["Type"].startswith("AWS::ServiceDiscovery::")]:
        del translated["Resources"][name]
    for resource in resources_of(translated, "AWS::ECS::Service").values():
        resource["Properties"].pop("ServiceRegistries", None)
    return translated


def create_stack(parameters: dict[str, str]) -> Stack:
    translated = without_service_discovery(without_custom_resources(translate(parameters)))
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
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                assert event["Properties"]["ApiId"] == {"Ref": "HttpApi"}


def test_every_function_ships_only_its_own_folder_and_the_layers_infra_layers_toml_gives_it() -> None:
    template = sam_template()
    functions = resources_of(template, "AWS::Serverless::Function")
    config = build_layers.load()

    assert {name: f["Properties"]["CodeUri"] for name, f in functions.items()} == {
        "ApiFunction": "functions/api/",
        "InboundFunction": "functions/inbound/",
        "McpFunction": "functions/mcp/",
        "DeliveryFunction": "functions/delivery/",
        "MigrateFunction": "functions/migrate/",
    }
    assert all(f["Properties"]["Handler"] == "handler.handler" for f in functions.values())
    assert "Layers" not in template["Globals"]["Function"]  # each function lists its own
    assert {name: f["Properties"]["Layers"] for name, f in functions.items()} == {
        f"{function.capitalize()}Function": [{"Ref": f"{layer.capitalize()}Layer"} for layer in layers]
        for function, layers in config["functions"].items()
    }
    layers = resources_of(template, "AWS::Serverless::LayerVersion")
    assert set(layers) == {f"{name.capitalize()}Layer" for name in config["layers"]}
    for name in config["layers"]:
        layer = layers[f"{name.capitalize()}Layer"]
        # Built by `make layer` (from the lock, with bytecode); SAM ships that folder, never the whole repository.
        assert layer["Properties"]["ContentUri"] == f"build/layers/{name}/"
        assert layer["Properties"]["CompatibleArchitectures"] == template["Globals"]["Function"]["Architectures"]
        assert "Metadata" not in layer
    assert template["Globals"]["Function"]["Runtime"] == "python3.12"
    makefile = (ROOT / "Makefile").read_text()
    assert "\nlayer: " in makefile and "infra/build_layers.py" in makefile and "LAYER_MAX_MB ?= 100\n" in makefile
    for name in ("signal", "discord"):
        assert (ROOT / "connectors" / name / "Dockerfile").is_file()


def test_the_layer_file_builds_and_pins_only_what_the_lock_pins() -> None:
    config = build_layers.load()
    pins = check_layer.pinned(ROOT / "requirements.lock")

    assert build_layers.problems(config) == []
    for name, layer in config["layers"].items():
        for requirement in layer["requirements"]:
            assert canonicalize_name(Requirement(requirement).name) in pins, (name, requirement)
        for code in layer.get("code", []):
            assert (ROOT / code / "__init__.py").is_file(), (name, code)
    assert set(config["functions"]) == {path.name for path in (ROOT / "functions").iterdir() if path.is_dir()} - {
        "__pycache__"
    }


def test_a_function_without_the_layers_its_layers_sit_on_is_refused() -> None:
    config = {
        "layers": {"base": {"requirements": []}, "mcp": {"on": ["base", "later"], "requirements": []}},
        "functions": {"mcp": ["mcp"], "api": ["base", "web"]},
    }

    assert build_layers.problems(config) == [
        "layer mcp sits on later, which is not declared before it",
        "function mcp lacks ['base', 'later'], which its layers sit on",
        "function api: unknown layers ['web']",
    ]


def test_a_layer_leaves_out_what_the_layers_under_it_ship(tmp_path: Path) -> None:
    site = tmp_path / "python"
    for name, files in (("pydantic", ["pydantic/__init__.py", "pydantic/main.py"]), ("mcp", ["mcp/__init__.py"])):
        _dist_info(site, name, "1.0")
        record = site / f"{name}-1.0.dist-info" / "RECORD"
        for relative in files:
            (site / relative).parent.mkdir(parents=True, exist_ok=True)
            (site / relative).write_text("")
        record.write_text("".join(f"{relative},,\n" for relative in [*files, record.relative_to(site).as_posix()]))

    build_layers.remove_distributions(site, {"pydantic"})

    assert sorted(path.relative_to(site).as_posix() for path in site.rglob("*") if path.is_file()) == [
        "mcp-1.0.dist-info/METADATA",
        "mcp-1.0.dist-info/RECORD",
        "mcp/__init__.py",
    ]


def test_dead_letter_alarm_watches_the_dead_letter_queue() -> None:
    alarm = sam_template()["Resources"]["DeadLetterAlarm"]

    assert alarm["Properties"]["Namespace"] == "AWS/SQS"
    assert alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Properties"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeliveryDeadLetterQueue", "QueueName"]}}
    ]
    assert alarm["Properties"]["Threshold"] == 0
    assert alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"


def template_globals() -> dict[str, Any]:
    variables: dict[str, Any] = sam_template()["Globals"]["Function"]["Environment"]["Variables"]
    return variables


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
    # The admin MCP server's unpause, redrive and update_mailbox re-enqueue, like the API's.
    assert sqs_actions("McpFunctionRole") == {"sqs:SendMessage*"}
    assert sqs_actions("InboundFunctionRole") == sqs_actions("ApiFunctionRole") == {"sqs:SendMessage*"}
    # The migrate step reads the database and bootstrap secrets, never the vault key, and sends nothing.
    assert sqs_actions("MigrateFunctionRole") == set()
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
        assert {"name": "CONNECTOR_PORT", "value": "8080"} in container["environment"]
    # moto keeps neither the launch type nor the network mode: those are asserted on the template.
    template = sam_template()["Resources"]
    for family in ("Signal", "Discord"):
        task, service = template[f"{family}TaskDefinition"]["Properties"], template[f"{family}Service"]["Properties"]
        assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
        assert service["LaunchType"] == "FARGATE"
        # One platform session at a time: a deployment stops the old task before starting the new one, and
        # a task that never gets healthy (GET /healthz) rolls the deployment back.
        assert service["DeploymentConfiguration"]["MaximumPercent"] == 100
        assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
        [container] = task["ContainerDefinitions"]
        assert "/healthz" in " ".join(container["HealthCheck"]["Command"])
        # A stable private name for config.outbound_url (Cloud Map), which the functions' allowlist admits.
        [registry] = service["ServiceRegistries"]
        assert registry["RegistryArn"] == {"Fn::GetAtt": [f"{family}Discovery", "Arn"]}
    allowed = template_globals()["CHATBOX_CONNECTOR_ALLOWED_HOSTS"]["Fn::If"][1]["Fn::Sub"]
    assert "signal.${AWS::StackName}.chatbox.internal:8080" in allowed
    assert "discord.${AWS::StackName}.chatbox.internal:8080" in allowed
    # signal-cli's keys live on EFS (kept when the stack goes), and the container knows its number.
    signal = template["SignalTaskDefinition"]["Properties"]
    [volume] = signal["Volumes"]
    assert volume["EFSVolumeConfiguration"]["FilesystemId"] == {"Ref": "SignalStateFileSystem"}
    assert volume["EFSVolumeConfiguration"]["TransitEncryption"] == "ENABLED"
    [mount] = signal["ContainerDefinitions"][0]["MountPoints"]
    assert (mount["SourceVolume"], mount["ContainerPath"]) == (volume["Name"], "/var/lib/signal-cli")
    assert template["SignalStateFileSystem"]["DeletionPolicy"] == "Retain"
    secrets = {entry["Name"] for entry in signal["ContainerDefinitions"][0]["Secrets"]}
    assert "SIGNAL_ACCOUNT" in secrets
    config = boto3.client("lambda", region_name=REGION).get_function_configuration(
        FunctionName=stack.physical("DeliveryFunction")
    )
    assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(subnets)


MANAGEMENT_ROUTERS = tuple(
    f"chatbox.web.routes.{name}"
    for name in ("mailboxes", "connections", "platforms", "credentials", "api_keys", "event_subscriptions")
)
# Loaded on first use, never at import: the platform SDKs when a connector is first built, httpx with the
# first webhook or container request, botocore's client with the first call to SQS (without boto3 and s3transfer;
# Powertools imports the bare `botocore` package, which is cheap).
LOADED_WHEN_USED = ("telegram", "slack_sdk", "discord", "httpx", "boto3", "s3transfer", "botocore.client")
# What each function must not load at cold start (`mcp` alone costs about a second).
# prometheus_client: only `/metrics` (never served on Lambda) and a process recording into Prometheus import it.
NOT_IMPORTED_AT_COLD_START: dict[str, tuple[str, ...]] = {
    "api": ("mcp", "chatbox.mcp", "prometheus_client", *LOADED_WHEN_USED),
    # The fast lane serves the POST routes; FastAPI and its routes load on the first request it hands on.
    "inbound": (
        "mcp",
        "chatbox.mcp",
        "fastapi",
        "chatbox.web.app",
        "chatbox.web.api_routers",
        "chatbox.web.routes",
        "prometheus_client",
        *LOADED_WHEN_USED,
    ),
    "delivery": ("mcp", "chatbox.mcp", "fastapi", "chatbox.web", "prometheus_client", *LOADED_WHEN_USED),
    "mcp": ("chatbox.web.api_routers", *MANAGEMENT_ROUTERS, *LOADED_WHEN_USED),
}


def lambda_probe(probe: str, home: Path, db_url: str | None = None) -> set[str]:
    """The modules loaded after `probe` runs in a fresh interpreter configured as the template configures a
    function (the SQS queue: its client is built); `db_url`, when given, instead of a SQLite file."""
    code = f"import json, sys\n{probe}\nprint(json.dumps(sorted(sys.modules)))"
    return set(json.loads(_run_probe(code, home, db_url)))


def loaded_files(probe: str, home: Path) -> set[Path]:
    """The files of the modules loaded after `probe` runs, as lambda_probe runs it."""
    listing = "[getattr(m, '__file__', None) for m in list(sys.modules.values())]"
    found = json.loads(_run_probe(f"import json, sys\n{probe}\nprint(json.dumps({listing}))", home))
    return {Path(file).resolve() for file in found if file}


def _run_probe(code: str, home: Path, db_url: str | None = None) -> str:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CHATBOX_", "AWS_"))},
        "CHATBOX_DB_URL": db_url or f"sqlite:///{home / 'cold.db'}",
        "CHATBOX_VAULT_KEY": "A" * 43 + "=",
        "CHATBOX_HOME": str(home),
        "CHATBOX_QUEUE": "sqs",
        "CHATBOX_SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/chatbox-deliveries.fifo",
        "CHATBOX_SQS_DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dead.fifo",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "cold",
        "AWS_SECRET_ACCESS_KEY": "cold",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "shared")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=home, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("function", sorted(NOT_IMPORTED_AT_COLD_START))
def test_each_function_imports_only_what_its_cold_start_needs(function: str, tmp_path: Path) -> None:
    loaded = lambda_probe(f"import functions.{function}.handler", tmp_path)

    assert f"functions.{function}.handler" in loaded
    assert {"sqlalchemy", "chatbox.adapters.sqs_queue"} <= loaded  # the probe sees what the handler imports
    assert sorted(m for m in NOT_IMPORTED_AT_COLD_START[function] if m in loaded) == []


# The database the template gives every function: Postgres (a URL from its secret). Nothing connects at import.
TEMPLATE_DB_URL = "postgresql+psycopg://chatbox:secret@chatbox-db.cluster-abc.eu-west-1.rds.amazonaws.com:5432/chatbox"
# What no function loads on Postgres: SQLite's dialect and driver. What the api function does not load at cold start
# on any database: the ingest path (its routers, the fast lane, its accepts), composed only if an ingest request
# reaches it (the template sends their POSTs to the inbound function).
SQLITE_ONLY = ("sqlalchemy.dialects.sqlite", "sqlite3", "chatbox.store.sqlite_accept")
INGEST_PATH = (
    "chatbox.services.ingest",
    "chatbox.services.accepts",
    "chatbox.store.postgres_accept",
    "chatbox.web.fast_ingest",
    "chatbox.web.routes.ingest",
    "chatbox.web.routes.inbound",
)


@pytest.mark.parametrize("function", ["api", "delivery", "inbound"])
def test_no_function_on_postgres_loads_sqlite_at_cold_start(function: str, tmp_path: Path) -> None:
    loaded = lambda_probe(f"import functions.{function}.handler", tmp_path, TEMPLATE_DB_URL)

    assert {f"functions.{function}.handler", "sqlalchemy.dialects.postgresql"} <= loaded
    assert sorted(m for m in SQLITE_ONLY if m in loaded) == []


def test_the_api_function_loads_no_ingest_path_at_cold_start(tmp_path: Path) -> None:
    loaded = lambda_probe("import functions.api.handler", tmp_path, TEMPLATE_DB_URL)

    assert "chatbox.web.routes.mailboxes" in loaded
    assert sorted(m for m in INGEST_PATH if m in loaded) == []


# What a first request loads beyond the cold start: the HTTP adapters build_runtime's factories import, boto3 and
# Powertools' parameters when a secret is given by ARN (as the template gives them), the webhook-mode connectors
# (their SDKs) in the functions that send or parse platform messages, the SQS client; migrate runs the migrations.
FIRST_USE = (
    "import chatbox.adapters.http_webhook, chatbox.adapters.http_container, boto3, "
    "aws_lambda_powertools.utilities.parameters"
)
FIRST_REQUEST: dict[str, str] = {
    name: f"{FIRST_USE}, connectors.telegram.connector, connectors.slack.connector\n"
    f"functions.{name}.handler.runtime.queue.client"  # the SQS client, built on first use
    for name in ("api", "inbound", "mcp")
} | {
    # The FastAPI app behind inbound's fast lane, composed on the first request the lane hands on.
    "inbound": f"{FIRST_USE}, connectors.telegram.connector, connectors.slack.connector\n"
    "functions.inbound.handler.runtime.queue.client\nfunctions.inbound.handler.inbound_api()",
    "delivery": f"{FIRST_USE}\nfunctions.delivery.handler.runtime.queue.client",
    "migrate": f"{FIRST_USE}\nfunctions.migrate.handler._set_up()",
}
# Lambda's python3.12: the markers of a layer's requirements are evaluated for it, not for this interpreter.
LAMBDA_MARKERS: dict[str, str] = {str(key): str(value) for key, value in default_environment().items()} | {
    "python_version": "3.12",
    "python_full_version": "3.12.1",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def distributions_required(requirements: list[str]) -> set[str]:
    """These requirements and everything they require, by canonical name (this virtualenv's metadata: the lock's
    versions)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(line) for line in requirements]
    while pending:
        requirement = pending.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(requirement.name) or []:
            needed = Requirement(line)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({**LAMBDA_MARKERS, "extra": e}) for e in extras):
                pending.append(needed)
    return {name for name, _ in seen}


# Imported when installed (this virtualenv has them), done without otherwise, shipped where no layer needs them:
# httpx's command line client (click, rich, pygments) and starlette's form parser (python-multipart: chatbox reads
# no form bodies; it ships in the mcp layer, which mcp requires).
IMPORTED_IF_INSTALLED = {"click", "rich", "pygments", "markdown-it-py", "mdurl", "python-multipart"}
ABSENT = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if any(name == gone or name.startswith(gone + ".") for gone in {0!r}):
            raise ModuleNotFoundError(name, name=name)
sys.meta_path.insert(0, Absent())
"""


@functools.cache  # one walk of every distribution's files per test process
@functools.cache  # the virtualenv does not change during a run; resolving its 10,000 files took 2.6 s of CPU
def distribution_of_file() -> dict[Path, str]:
    """Each installed file of this virtualenv, by the distribution (canonical name) that installed it."""
    return {
        Path(str(dist.locate_file(file))).resolve(): canonicalize_name(dist.metadata["Name"])
        for dist in metadata.distributions()
        for file in dist.files or []
        if file.suffix in (".py", ".so", ".pyd")
    }


@pytest.mark.parametrize("function", sorted(FIRST_REQUEST))
def test_every_module_a_function_loads_ships_in_its_layers_or_the_runtime(function: str, tmp_path: Path) -> None:
    config = build_layers.load()
    layers = [config["layers"][name] for name in config["functions"][function]]
    shipped = distributions_required([line for layer in layers for line in layer["requirements"]])
    dropped = {canonicalize_name(name) for layer in layers for name in layer.get("drop", [])}
    provided = distributions_required(config["runtime"]["provides"])
    code = {(ROOT / folder).resolve() for layer in layers for folder in layer.get("code", [])}

    # What the layers prune or drop cannot be imported, as on Lambda (the probe would find it in this virtualenv).
    absent = [path.replace("/", ".") for layer in layers for path in layer.get("prune", [])]
    absent += [name.replace("-", "_") for name in dropped]
    startup = loaded_files("pass", tmp_path)  # this virtualenv's own: setuptools' distutils hook
    probe = f"{ABSENT.format(absent)}\nimport functions.{function}.handler\n{FIRST_REQUEST[function]}"
    files = loaded_files(probe, tmp_path) - startup

    ours = {file for file in files if file.is_relative_to(ROOT) and not file.is_relative_to(ROOT / ".venv")}
    own = ROOT / "functions" / function  # on Lambda, the function's folder (the test imports it as a package)
    stray = {f for f in ours if not f.is_relative_to(own) and f != ROOT / "functions" / "__init__.py"}
    assert sorted(str(f.relative_to(ROOT)) for f in stray if not any(f.is_relative_to(c) for c in code)) == []
    installed = distribution_of_file()
    needed = {installed[file] for file in files if file in installed} - {"chatbox"}
    assert sorted(needed - (shipped - dropped) - provided - IMPORTED_IF_INSTALLED) == []


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
        low, high = declared[name].get("MinValue"), declared[name].get("MaxValue")
        assert low is None or float(value) >= low, (name, value, low)
        assert high is None or float(value) <= high, (name, value, high)


def test_every_deploy_migrates_before_the_functions_change_and_creates_the_first_account() -> None:
    resources = translate(REQUIRED)["Resources"]

    schema = resources["DatabaseSchema"]
    assert schema["Type"] == "Custom::DatabaseSchema"
    assert schema["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    # A new version of one of its layers is a changed property: CloudFormation runs the step again on every code
    # change. (SAM names each layer version by a hash of its content: BaseLayer<hash>.)
    assert [ref["Ref"][: -len("0123456789")] for ref in schema["Properties"]["Code"]] == ["BaseLayer", "MigrateLayer"]
    for name in ("ApiFunction", "InboundFunction", "McpFunction", "DeliveryFunction"):
        assert "DatabaseSchema" in resources[name]["DependsOn"], name
    variables = resources["MigrateFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["CHATBOX_BOOTSTRAP_API_KEY_SECRET_ARN"] == {"Ref": "BootstrapApiKeySecret"}
    assert variables["CHATBOX_VAULT_KEY_SECRET_ARN"] == ""
    generated = resources["BootstrapApiKeySecret"]["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32  # chatbox refuses a chosen API key shorter than 32 characters
    assert "BootstrapApiKeySecretArn" in sam_template()["Outputs"]


def test_the_database_step_waits_for_a_new_cluster_and_its_proxy() -> None:
    parameters = {**REQUIRED, "CreateDatabase": "true", "VpcId": "vpc-1", "PrivateSubnetIds": "subnet-1,subnet-2"}
    resources = translate({**parameters, "UseRdsProxy": "true"})["Resources"]

    waits_for = json.dumps(resources["DatabaseSchema"]["Properties"]["Database"])
    # The new cluster, the attachment that writes its host into the secret the migrate step reads, the proxy.
    for resource in ("DatabaseInstance", "DatabaseSecretAttachment", "DatabaseProxyTargetGroup"):
        assert json.dumps({"Ref": resource}) in waits_for, resource
    assert resources["DatabaseProxy"]["Properties"]["Auth"][0]["SecretArn"] == {"Ref": "DatabaseSecret"}
    assert resources["DatabaseProxy"]["Properties"]["RequireTLS"] is True
    assert resources["DatabaseProxyTargetGroup"]["Properties"]["DBClusterIdentifiers"] == [{"Ref": "DatabaseCluster"}]
    # The functions connect to the proxy's endpoint with the generated secret's credentials.
    assert template_globals()["CHATBOX_DB_HOST"] == {
        "Fn::If": ["CreateProxy", {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}, ""]
    }
    # The credentials outlive the stack with the cluster's final snapshot.
    assert resources["DatabaseSecret"]["DeletionPolicy"] == "Retain"


def test_database_connections_have_a_ceiling() -> None:
    variables = template_globals()
    assert (variables["CHATBOX_DB_POOL_SIZE"], variables["CHATBOX_DB_MAX_OVERFLOW"]) == ("1", "1")
    template = sam_template()
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        if name != "MigrateFunction":
            reserved = function["Properties"]["ReservedConcurrentExecutions"]
            assert reserved == {
                "Fn::If": ["ReserveConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
            }
    assert template["Parameters"]["ReservedConcurrency"]["Default"] > 0


def test_deferrals_alone_cannot_move_a_pending_delivery_to_the_sqs_dead_letter_queue() -> None:
    # A message waiting behind its chat's failing ones is received (and deferred) up to about batch size x
    # (max attempts + 2) times per message ahead of it; SQS's own count must stay far above that.
    parameters = sam_template()["Parameters"]
    assert parameters["DeliveryMaxReceiveCount"]["Default"] == 1000
    assert parameters["DeliveryMaxReceiveCount"]["MinValue"] >= 10 * (8 + 2)


def test_operations_alarms_cover_errors_throttles_queue_age_and_api_5xx() -> None:
    alarms = resources_of(sam_template(), "AWS::CloudWatch::Alarm")
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}

    assert watched == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/ApiGateway", "5xx"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
    }
    for metric in ("Errors", "Throttles"):
        functions = {
            a["Properties"]["Dimensions"][0]["Value"]["Ref"]
            for a in alarms.values()
            if a["Properties"]["MetricName"] == metric
        }
        assert functions == {"ApiFunction", "InboundFunction", "McpFunction", "DeliveryFunction"}
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"]["Fn::If"][0] == "HasAlarmTopic"


def test_http_api_is_throttled_and_logs_access_without_headers() -> None:
    api = sam_template()["Resources"]["HttpApi"]["Properties"]

    assert api["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRateLimit"}
    assert api["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurstLimit"}
    assert api["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    log_format = api["AccessLogSettings"]["Format"]
    assert "$context.status" in log_format and "header" not in log_format.lower()


def _dist_info(layer: Path, name: str, version: str) -> None:
    folder = layer / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")


@pytest.mark.parametrize(
    ("installed", "problem"),
    [
        (("psycopg-binary", "3.2.13"), "psycopg-binary 3.2.13: requirements.lock pins 3.3.9"),
        (("left-pad", "1.0"), "left-pad 1.0: not in requirements.lock"),
    ],
    ids=["older-release", "unpinned"],
)
def test_a_layer_that_drifts_from_the_lock_fails_its_build(
    installed: tuple[str, str], problem: str, tmp_path: Path
) -> None:
    layer, lock = tmp_path / "python", tmp_path / "requirements.lock"
    lock.write_text("psycopg-binary==3.3.9\nSQLAlchemy==2.0.44\n")
    _dist_info(layer, "SQLAlchemy", "2.0.44")
    _dist_info(layer, *installed)

    result = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "check_layer.py"), str(layer), str(lock)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.strip() == f"layer drift: {problem}"


def test_a_layer_at_the_locks_versions_passes(tmp_path: Path) -> None:
    layer, lock = tmp_path / "python", tmp_path / "requirements.lock"
    lock.write_text("psycopg-binary==3.3.9\nSQLAlchemy==2.0.44\n")
    _dist_info(layer, "sqlalchemy", "2.0.44")
    _dist_info(layer, "psycopg_binary", "3.3.9")

    result = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "check_layer.py"), str(layer), str(lock)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert (result.returncode, result.stderr) == (0, "")
