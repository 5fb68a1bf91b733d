"""The SAM template `infra/template.yaml`: linted (cfn-lint), security-checked (checkov), translated
offline by the SAM translator, and deployed into moto's CloudFormation, whose services are then asked
what was really created.

moto's CloudFormation accepts some resource types without creating anything, and ignores some
properties of the types it does create; what it cannot show is checked on the translated template
instead (each such test says so in its name), never left out.
"""

import ast
import io
import json
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
BIN = Path(sys.executable).parent

# Resource types moto 5.2's CloudFormation reports as CREATE_COMPLETE without creating them (it lists
# them with an empty logical id and logs "No Moto CloudFormation support for ..."). Their properties
# are checked on the translated template in test_resources_moto_cannot_create_are_declared_right.
MOTO_CANNOT_CREATE = {
    "AWS::CloudWatch::Alarm",  # DeadLetterAlarm, DeadLetterGrowthAlarm, QueueAgeAlarm, SchedulerSilenceAlarm, the errors alarms
    "AWS::S3::BucketPolicy",  # LakeBucketPolicy
    "AWS::SNS::Subscription",  # AlertEmailSubscription
    "AWS::SQS::QueuePolicy",  # PushQueuePolicy
    "AWS::Lambda::Url",  # WebhookFunctionUrl (moto cannot even resolve its GetAtt: the WebhookUrl output)
}

CODE_BUCKET = "pipeline-code"
CODE_KEY = "functions.zip"
SEED = '[{"name":"acme-live","secret_arn":"arn:aws:secretsmanager:us-east-1:123456789012:secret:stripe-pipeline/acme-live-AbCdEf"}]'
# Non-default values, so that the checks below see the parameters flow through.
PARAMS = {
    "AlertEmail": "ops@example.com",
    "Accounts": SEED,
    "WorkerTimeoutSeconds": "300",
    "WorkerMemoryMB": "2048",
    "SchedulerTimeoutSeconds": "120",
    "SchedulerMemoryMB": "512",
    "WorkerBatchSize": "3",
    "WorkerConcurrency": "4",
    "MaxReceiveCount": "7",
    "LogRetentionDays": "14",
    "RateBudget": "0.25",
    "ScheduleExpression": "rate(5 minutes)",
    "ExportEveryMinutes": "180",
}

COMMON_ENV = {
    "STRIPE_PIPELINE_ACCOUNTS_TABLE",
    "STRIPE_PIPELINE_STATE_TABLE",
    "STRIPE_PIPELINE_QUEUE_URL",
    "STRIPE_PIPELINE_PUSH_QUEUE_URL",
    "STRIPE_PIPELINE_LAKE_URL",
    "STRIPE_PIPELINE_TOPIC_ARN",
    "STRIPE_PIPELINE_API_BASE",
    "STRIPE_PIPELINE_FAILURE_ALERT_AFTER",
    "STRIPE_PIPELINE_SNAPSHOT_INTERVAL_SECS",
    "STRIPE_PIPELINE_UNANNOUNCED_INTERVAL_SECS",
    "STRIPE_PIPELINE_LAG_SECS",
    "STRIPE_PIPELINE_OVERLAP_SECS",
    "STRIPE_PIPELINE_RATE_BUDGET",
    "STRIPE_PIPELINE_CONCURRENCY",
    "STRIPE_PIPELINE_EXPORT_URL",
    "STRIPE_PIPELINE_EXPORT_EVERY_MINUTES",
    "STRIPE_PIPELINE_EXPORT_KEEP",
    "STRIPE_PIPELINE_REDSHIFT_WORKGROUP",
    "STRIPE_PIPELINE_REDSHIFT_CLUSTER",
    "STRIPE_PIPELINE_REDSHIFT_DATABASE",
    "STRIPE_PIPELINE_REDSHIFT_DB_USER",
    "STRIPE_PIPELINE_REDSHIFT_SECRET_ARN",
    "STRIPE_PIPELINE_REDSHIFT_COPY_ROLE_ARN",
    "STRIPE_PIPELINE_SNOWFLAKE_ACCOUNT",
    "STRIPE_PIPELINE_SNOWFLAKE_USER",
    "STRIPE_PIPELINE_SNOWFLAKE_ROLE",
    "STRIPE_PIPELINE_SNOWFLAKE_WAREHOUSE",
    "STRIPE_PIPELINE_SNOWFLAKE_DATABASE",
    "STRIPE_PIPELINE_SNOWFLAKE_STORAGE_INTEGRATION",
    "STRIPE_PIPELINE_SNOWFLAKE_PRIVATE_KEY_SECRET_ARN",
    "RUST_LOG",
}


def run(*args):
    return subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=120)


class NoManagedPolicies:
    """The translator's managed-policy loader, offline: the template names no managed policy."""

    def load(self):
        return {}


def translate(params):
    template = yaml_parse(TEMPLATE.read_text())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            assert resource["Properties"]["CodeUri"] == ".."
            resource["Properties"]["CodeUri"] = f"s3://{CODE_BUCKET}/{CODE_KEY}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the translator wants a region
        return transform(template, dict(params), NoManagedPolicies())


@pytest.fixture(scope="module")
def source():
    return yaml_parse(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def translated():
    return translate(PARAMS)


def deploy(aws_client, translated, params):
    """A translated template deployed in moto: physical ids and outputs."""
    s3 = aws_client("s3")
    if CODE_BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=CODE_BUCKET)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=archive.getvalue())

    cf = aws_client("cloudformation")
    name = f"pipeline-{uuid.uuid4().hex[:8]}"
    cf.create_stack(
        StackName=name,
        TemplateBody=json.dumps(translated),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    deadline = time.monotonic() + 30
    while True:
        described = cf.describe_stacks(StackName=name)["Stacks"][0]
        if not described["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    resources = cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {
        "name": name,
        "status": described["StackStatus"],
        "reason": described.get("StackStatusReason"),
        "resources": resources,
        "ids": {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"]},
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
        "account": aws_client("sts").get_caller_identity()["Account"],
    }


@pytest.fixture(scope="module")
def stack(aws_client, translated):
    """The translated template deployed in moto with PARAMS (no warehouse)."""
    return deploy(aws_client, translated, PARAMS)


# ------------------------------------------------------------------ static checks


def test_cfn_lint_reports_nothing():
    result = run(BIN / "cfn-lint", TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_fails_nothing_and_every_skip_is_explained(source):
    result = run(
        BIN / "checkov", "-f", TEMPLATE, "--framework", "cloudformation", "--compact", "--skip-download"
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout, result.stdout[-3000:]
    for name, resource in source["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 40, f"{name}: skip {skip['id']} needs a reason"


def test_every_parameter_is_documented(source):
    for name, parameter in source["Parameters"].items():
        assert len(parameter.get("Description", "")) > 20, name
    assert "stripe-pipeline/" in source["Parameters"]["Accounts"]["Description"]


def test_functions_build_with_cargo_lambda_for_arm64(source):
    functions = [("SchedulerFunction", "scheduler"), ("WorkerFunction", "worker"), ("WebhookFunction", "webhook")]
    for name, binary in functions:
        fn = source["Resources"][name]
        assert fn["Type"] == "AWS::Serverless::Function"
        assert fn["Metadata"]["BuildMethod"] == "rust-cargolambda"
        assert fn["Metadata"]["BuildProperties"] == {"Binary": binary}
        props = fn["Properties"]
        assert props["CodeUri"] == ".."
        assert props["Handler"] == "bootstrap"
        assert props["Runtime"] == "provided.al2023"
        assert props["Architectures"] == ["arm64"]
    # The workspace root CodeUri points at must hold every binary.
    for _, binary in functions:
        assert (ROOT / "functions" / "src" / "bin" / f"{binary}.rs").exists(), binary


def test_data_resources_are_retained_on_delete_and_replace(source):
    for name in ["AccountsTable", "StateTable", "LakeBucket"]:
        assert source["Resources"][name]["DeletionPolicy"] == "Retain", name
        assert source["Resources"][name]["UpdateReplacePolicy"] == "Retain", name


def test_translation_yields_the_expected_resources(translated):
    types = {k: v["Type"] for k, v in translated["Resources"].items()}
    assert types == {
        "SchedulerFunction": "AWS::Lambda::Function",
        "SchedulerFunctionRole": "AWS::IAM::Role",
        "SchedulerFunctionTick": "AWS::Events::Rule",
        "SchedulerFunctionTickPermission": "AWS::Lambda::Permission",
        "SchedulerLogGroup": "AWS::Logs::LogGroup",
        "WorkerFunction": "AWS::Lambda::Function",
        "WorkerFunctionRole": "AWS::IAM::Role",
        "WorkerFunctionSlices": "AWS::Lambda::EventSourceMapping",
        "WorkerFunctionPushes": "AWS::Lambda::EventSourceMapping",
        "WorkerLogGroup": "AWS::Logs::LogGroup",
        "SliceQueue": "AWS::SQS::Queue",
        "PushQueue": "AWS::SQS::Queue",
        # Created only with StripeEventSource:
        "StripeEventBus": "AWS::Events::EventBus",
        "StripeEventRule": "AWS::Events::Rule",
        "PushQueuePolicy": "AWS::SQS::QueuePolicy",
        # Created only with WebhookSecretArn:
        "WebhookFunction": "AWS::Lambda::Function",
        "WebhookFunctionRole": "AWS::IAM::Role",
        "WebhookFunctionUrl": "AWS::Lambda::Url",
        "WebhookFunctionUrlPublicPermissions": "AWS::Lambda::Permission",
        "WebhookFunctionURLInvokeAllowPublicAccess": "AWS::Lambda::Permission",
        "WebhookLogGroup": "AWS::Logs::LogGroup",
        "SliceDeadLetterQueue": "AWS::SQS::Queue",
        "AccountsTable": "AWS::DynamoDB::Table",
        "StateTable": "AWS::DynamoDB::Table",
        "LakeBucket": "AWS::S3::Bucket",
        "LakeBucketPolicy": "AWS::S3::BucketPolicy",
        "MonitoringKey": "AWS::KMS::Key",
        "AlertTopic": "AWS::SNS::Topic",
        "AlertEmailSubscription": "AWS::SNS::Subscription",
        "DeadLetterAlarm": "AWS::CloudWatch::Alarm",
        "DeadLetterGrowthAlarm": "AWS::CloudWatch::Alarm",
        "QueueAgeAlarm": "AWS::CloudWatch::Alarm",
        "SchedulerSilenceAlarm": "AWS::CloudWatch::Alarm",
        "StaleDataAlarm": "AWS::CloudWatch::Alarm",
        "SchedulerErrorsAlarm": "AWS::CloudWatch::Alarm",
        "WorkerErrorsAlarm": "AWS::CloudWatch::Alarm",
        "RedshiftCopyRole": "AWS::IAM::Role",  # created only with a Redshift workgroup or cluster
        "SnowflakeLakeRole": "AWS::IAM::Role",  # created only with a Snowflake account
    }


# ------------------------------------------------------------------ the stack in moto


def test_stack_creates_every_resource_moto_supports(stack, translated):
    assert stack["status"] == "CREATE_COMPLETE", stack["reason"]
    listed = {r["LogicalResourceId"]: r["ResourceStatus"] for r in stack["resources"] if r["LogicalResourceId"]}
    assert set(listed) <= set(translated["Resources"])
    assert {r["Type"] for r in translated["Resources"].values()} >= MOTO_CANNOT_CREATE
    for name, resource in translated["Resources"].items():
        if resource["Type"] in MOTO_CANNOT_CREATE:
            continue
        if resource.get("Condition") in ("HasRedshift", "HasSnowflake", "HasEventSource", "HasWebhook"):
            # PARAMS configure no warehouse and no pushes; the tests of each deploy these.
            assert name not in listed, name
            continue
        assert listed.get(name) == "CREATE_COMPLETE", f"{name} ({resource['Type']}): {listed.get(name)}"
    for r in stack["resources"]:
        assert r["ResourceStatus"] == "CREATE_COMPLETE", r


def test_outputs_name_the_created_resources(stack, aws_client):
    out, ids = stack["outputs"], stack["ids"]
    assert out["LakeBucketName"] == ids["LakeBucket"]
    assert out["LakeUrl"] == f"s3://{ids['LakeBucket']}/lake"
    assert out["AccountsTableName"] == ids["AccountsTable"]
    assert out["StateTableName"] == ids["StateTable"]
    assert out["SliceQueueUrl"] == ids["SliceQueue"]
    assert out["SliceDeadLetterQueueUrl"] == ids["SliceDeadLetterQueue"]
    assert out["PushQueueUrl"] == ids["PushQueue"]
    assert "WebhookUrl" not in out
    assert out["AlertTopicArn"] == ids["AlertTopic"]
    aws_client("s3").head_bucket(Bucket=out["LakeBucketName"])


def queue_attributes(aws_client, url):
    return aws_client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_slice_and_push_queues_redrive_to_the_dead_letter_queue(stack, aws_client):
    dlq = queue_attributes(aws_client, stack["ids"]["SliceDeadLetterQueue"])
    pushes = queue_attributes(aws_client, stack["ids"]["PushQueue"])
    assert json.loads(pushes["RedrivePolicy"]) == json.loads(
        queue_attributes(aws_client, stack["ids"]["SliceQueue"])["RedrivePolicy"]
    )
    assert int(pushes["VisibilityTimeout"]) == 6 * 300
    assert pushes["SqsManagedSseEnabled"] == "true"
    queue = queue_attributes(aws_client, stack["ids"]["SliceQueue"])
    redrive = json.loads(queue["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 7
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(queue["VisibilityTimeout"]) == 6 * 300  # six times WorkerTimeoutSeconds
    assert queue["SqsManagedSseEnabled"] == "true" and dlq["SqsManagedSseEnabled"] == "true"
    assert int(dlq["MessageRetentionPeriod"]) == 14 * 86400
    assert int(dlq["MessageRetentionPeriod"]) > int(queue["MessageRetentionPeriod"])


def test_tables_have_their_keys_and_on_demand_billing(stack, aws_client):
    dynamodb = aws_client("dynamodb")
    for name, key in [("AccountsTable", "name"), ("StateTable", "key")]:
        table = dynamodb.describe_table(TableName=stack["ids"][name])["Table"]
        assert table["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}], name
        assert table["AttributeDefinitions"] == [{"AttributeName": key, "AttributeType": "S"}], name
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST", name


def test_table_ttl_recovery_and_encryption_in_the_template_moto_ignores_them(translated):
    for name in ["AccountsTable", "StateTable"]:
        props = translated["Resources"][name]["Properties"]
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {"SSEEnabled": True}
    state = translated["Resources"]["StateTable"]["Properties"]
    assert state["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_lake_bucket_is_encrypted(stack, aws_client):
    rules = aws_client("s3").get_bucket_encryption(Bucket=stack["ids"]["LakeBucket"])[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_lake_bucket_protections_in_the_template_moto_ignores_them(translated):
    props = translated["Resources"]["LakeBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireTemporaryFiles"]["Prefix"] == "lake/_tmp/"
    assert rules["ExpireTemporaryFiles"]["ExpirationInDays"] == 1
    assert rules["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "Prefix" not in rules["AbortIncompleteMultipartUploads"]
    assert all(r["Status"] == "Enabled" for r in rules.values())


def test_resources_moto_cannot_create_are_declared_right(translated):
    res = translated["Resources"]
    policy = res["LakeBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "LakeBucket"}
    [deny] = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [{"Fn::GetAtt": ["LakeBucket", "Arn"]}, {"Fn::Sub": "${LakeBucket.Arn}/*"}]

    sub = res["AlertEmailSubscription"]
    assert sub["Condition"] == "HasAlertEmail"
    assert translated["Conditions"]["HasAlertEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]}
    assert sub["Properties"] == {
        "TopicArn": {"Ref": "AlertTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlertEmail"},
    }

    alarms = {
        "DeadLetterAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                            {"Fn::GetAtt": ["SliceDeadLetterQueue", "QueueName"]}),
        "SchedulerErrorsAlarm": ("AWS/Lambda", "Errors", "FunctionName", {"Ref": "SchedulerFunction"}),
        "WorkerErrorsAlarm": ("AWS/Lambda", "Errors", "FunctionName", {"Ref": "WorkerFunction"}),
    }
    for name, (namespace, metric, dimension, value) in alarms.items():
        props = res[name]["Properties"]
        assert (props["Namespace"], props["MetricName"]) == (namespace, metric), name
        assert props["Dimensions"] == [{"Name": dimension, "Value": value}], name
        assert props["Threshold"] == 0 and props["ComparisonOperator"] == "GreaterThanThreshold", name
        assert props["AlarmActions"] == [{"Ref": "AlertTopic"}], name

    # The dead-letter alarm clears when the queue is empty; its growth alarm fires again for new arrivals.
    assert res["DeadLetterAlarm"]["Properties"]["OKActions"] == [{"Ref": "AlertTopic"}]
    growth = res["DeadLetterGrowthAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in growth["Metrics"]}
    assert metrics["growth"]["Expression"] == "DIFF(depth)" and metrics["growth"]["ReturnData"]
    depth = metrics["depth"]["MetricStat"]
    assert (depth["Metric"]["Namespace"], depth["Metric"]["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert depth["Metric"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["SliceDeadLetterQueue", "QueueName"]}}
    ]
    assert (growth["Threshold"], growth["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert growth["AlarmActions"] == [{"Ref": "AlertTopic"}]

    # Staleness: slices waiting too long, and a scheduler that stopped running (no data is the alarm).
    age = res["QueueAgeAlarm"]["Properties"]
    assert (age["Namespace"], age["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["SliceQueue", "QueueName"]}}]
    assert age["Threshold"] == {"Ref": "QueueAgeAlarmSeconds"}
    assert age["ComparisonOperator"] == "GreaterThanThreshold"
    silence = res["SchedulerSilenceAlarm"]["Properties"]
    assert (silence["Namespace"], silence["MetricName"]) == ("AWS/Lambda", "Invocations")
    assert silence["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "SchedulerFunction"}}]
    assert silence["Period"] == {"Ref": "SchedulerSilenceAlarmSeconds"}
    assert (silence["Threshold"], silence["ComparisonOperator"]) == (1, "LessThanThreshold")
    assert silence["TreatMissingData"] == "breaching"
    # Stale tables: the scheduler's metric in its stack's namespace (functions/src/metrics.rs names it).
    stale = res["StaleDataAlarm"]["Properties"]
    assert stale["Namespace"] == {"Fn::Sub": "StripePipeline/${AWS::StackName}"}
    assert stale["MetricName"] == "OverdueSeconds" and "Dimensions" not in stale
    assert (stale["Statistic"], stale["ComparisonOperator"]) == ("Maximum", "GreaterThanThreshold")
    assert stale["Threshold"] == {"Ref": "StaleDataAlarmSeconds"}
    assert stale["TreatMissingData"] == "notBreaching"
    for props in (age, silence, stale):
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "AlertTopic"}]


def test_alert_topic_is_encrypted_with_a_key_cloudwatch_may_use(stack, aws_client, translated):
    attributes = aws_client("sns").get_topic_attributes(TopicArn=stack["ids"]["AlertTopic"])["Attributes"]
    assert attributes["KmsMasterKeyId"] == stack["ids"]["MonitoringKey"]
    assert aws_client("kms").get_key_rotation_status(KeyId=stack["ids"]["MonitoringKey"])["KeyRotationEnabled"]
    # moto 5.2 answers DescribeKey/GetKeyPolicy with HTTP 500 for keys made by CloudFormation, so the
    # key policy is read from the template.
    statements = translated["Resources"]["MonitoringKey"]["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])


def function_config(aws_client, stack, name):
    return aws_client("lambda").get_function_configuration(FunctionName=stack["ids"][name])


def test_functions_get_their_settings_from_the_environment(stack, aws_client):
    ids, account = stack["ids"], stack["account"]
    scheduler = function_config(aws_client, stack, "SchedulerFunction")["Environment"]["Variables"]
    worker = function_config(aws_client, stack, "WorkerFunction")["Environment"]["Variables"]
    assert set(worker) == COMMON_ENV
    assert set(scheduler) == COMMON_ENV | {"STRIPE_PIPELINE_SEED_ACCOUNTS", "STRIPE_PIPELINE_METRICS_NAMESPACE"}
    assert scheduler["STRIPE_PIPELINE_SEED_ACCOUNTS"] == SEED
    assert scheduler["STRIPE_PIPELINE_METRICS_NAMESPACE"] == f"StripePipeline/{stack['name']}"
    expected = {
        "STRIPE_PIPELINE_ACCOUNTS_TABLE": ids["AccountsTable"],
        "STRIPE_PIPELINE_STATE_TABLE": ids["StateTable"],
        "STRIPE_PIPELINE_QUEUE_URL": ids["SliceQueue"],
        "STRIPE_PIPELINE_PUSH_QUEUE_URL": ids["PushQueue"],
        "STRIPE_PIPELINE_LAKE_URL": f"s3://{ids['LakeBucket']}/lake",
        "STRIPE_PIPELINE_TOPIC_ARN": f"arn:aws:sns:us-east-1:{account}:{ids['AlertTopic'].split(':')[-1]}",
        "STRIPE_PIPELINE_API_BASE": "https://api.stripe.com",
        "STRIPE_PIPELINE_FAILURE_ALERT_AFTER": "3",
        "STRIPE_PIPELINE_SNAPSHOT_INTERVAL_SECS": "86400",
        "STRIPE_PIPELINE_UNANNOUNCED_INTERVAL_SECS": "3600",
        "STRIPE_PIPELINE_LAG_SECS": "60",
        "STRIPE_PIPELINE_OVERLAP_SECS": "300",
        "STRIPE_PIPELINE_RATE_BUDGET": "0.25",
        "STRIPE_PIPELINE_CONCURRENCY": "4",
        "STRIPE_PIPELINE_EXPORT_URL": f"s3://{ids['LakeBucket']}/export",
        "STRIPE_PIPELINE_EXPORT_EVERY_MINUTES": "180",
        "STRIPE_PIPELINE_EXPORT_KEEP": "7",
        "RUST_LOG": "info",
    }
    for variables in (scheduler, worker):
        # moto passes Number parameters on as numbers; Lambda itself stores strings.
        assert {k: str(variables[k]) for k in expected} == expected


def test_functions_have_their_limits(stack, aws_client, translated):
    lam = aws_client("lambda")
    worker = function_config(aws_client, stack, "WorkerFunction")
    scheduler = function_config(aws_client, stack, "SchedulerFunction")
    assert (worker["Timeout"], worker["MemorySize"]) == (300, 2048)
    assert (scheduler["Timeout"], scheduler["MemorySize"]) == (120, 512)
    for config in (worker, scheduler):
        assert (config["Runtime"], config["Handler"]) == ("provided.al2023", "bootstrap")
    for name, reserved in [("WorkerFunction", 4), ("SchedulerFunction", 1)]:
        concurrency = lam.get_function_concurrency(FunctionName=stack["ids"][name])
        assert concurrency["ReservedConcurrentExecutions"] == reserved, name
    # moto ignores Architectures and LoggingConfig: read from the translated template.
    for name, group in [("SchedulerFunction", "SchedulerLogGroup"), ("WorkerFunction", "WorkerLogGroup")]:
        props = translated["Resources"][name]["Properties"]
        assert props["Architectures"] == ["arm64"]
        assert props["LoggingConfig"] == {"LogGroup": {"Ref": group}}


def test_log_groups_keep_logs_for_the_chosen_days(stack, aws_client):
    logs = aws_client("logs")
    for name in ["SchedulerLogGroup", "WorkerLogGroup"]:
        [group] = logs.describe_log_groups(logGroupNamePrefix=stack["ids"][name])["logGroups"]
        assert group["logGroupName"] == stack["ids"][name]
        assert group["retentionInDays"] == 14


def test_worker_is_fed_by_the_slice_and_push_queues(stack, aws_client, translated):
    slices = queue_attributes(aws_client, stack["ids"]["SliceQueue"])["QueueArn"]
    pushes = queue_attributes(aws_client, stack["ids"]["PushQueue"])["QueueArn"]
    mappings = aws_client("lambda").list_event_source_mappings(FunctionName=stack["ids"]["WorkerFunction"])[
        "EventSourceMappings"
    ]
    by_queue = {m["EventSourceArn"]: m for m in mappings}
    assert set(by_queue) == {slices, pushes}
    assert by_queue[slices]["BatchSize"] == 3
    assert by_queue[pushes]["BatchSize"] == 100
    for mapping in mappings:
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert by_queue[slices]["ScalingConfig"] == {"MaximumConcurrency": 4}
    # moto ignores the batching window and the pushes' concurrency: read from the template.
    props = translated["Resources"]["WorkerFunctionPushes"]["Properties"]
    assert props["MaximumBatchingWindowInSeconds"] == 1
    assert props["ScalingConfig"] == {"MaximumConcurrency": 2}


def test_scheduler_runs_on_the_schedule(stack, aws_client):
    events = aws_client("events")
    rule = events.describe_rule(Name=stack["ids"]["SchedulerFunctionTick"])
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    assert rule["State"] == "ENABLED"
    [target] = events.list_targets_by_rule(Rule=stack["ids"]["SchedulerFunctionTick"])["Targets"]
    assert target["Arn"] == function_config(aws_client, stack, "SchedulerFunction")["FunctionArn"]


def role_grants(aws_client, role):
    """(action, resource) pairs of a role's inline policies."""
    iam = aws_client("iam")
    grants = set()
    for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
        if isinstance(document, str):  # moto 5.2 returns CloudFormation-made documents as Python reprs
            document = ast.literal_eval(document)
        # moto keeps an !If's AWS::NoValue branch as null; CloudFormation drops it.
        for statement in filter(None, document["Statement"]):
            assert statement["Effect"] == "Allow"
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            grants |= {(a, r) for a in actions for r in resources}
    return grants


def test_roles_grant_exactly_what_the_functions_call(stack, aws_client, translated):
    ids, account = stack["ids"], stack["account"]
    dynamodb = aws_client("dynamodb")
    accounts = dynamodb.describe_table(TableName=ids["AccountsTable"])["Table"]["TableArn"]
    state = dynamodb.describe_table(TableName=ids["StateTable"])["Table"]["TableArn"]
    queue = queue_attributes(aws_client, ids["SliceQueue"])["QueueArn"]
    pushes = queue_attributes(aws_client, ids["PushQueue"])["QueueArn"]
    bucket = f"arn:aws:s3:::{ids['LakeBucket']}"
    secrets = f"arn:aws:secretsmanager:us-east-1:{account}:secret:stripe-pipeline/*"
    key = f"arn:aws:kms:us-east-1:{account}:key/{ids['MonitoringKey']}"
    both = {
        ("dynamodb:GetItem", state),
        ("dynamodb:PutItem", state),
        ("dynamodb:DeleteItem", state),
        ("sqs:SendMessage", queue),
        ("secretsmanager:GetSecretValue", secrets),
        ("sns:Publish", ids["AlertTopic"]),
        ("kms:GenerateDataKey", key),
        ("kms:Decrypt", key),
    }
    assert role_grants(aws_client, ids["SchedulerFunctionRole"]) == both | {
        ("dynamodb:Scan", accounts),
        ("dynamodb:PutItem", accounts),
    }
    assert role_grants(aws_client, ids["WorkerFunctionRole"]) == both | {
        ("dynamodb:GetItem", accounts),
        # An EventBridge delivery's account is the one whose event_source it came from.
        ("dynamodb:Scan", accounts),
        # A failed slice or push is retried after a backoff of minutes.
        ("sqs:ChangeMessageVisibility", queue),
        ("sqs:ChangeMessageVisibility", pushes),
        ("s3:GetObject", f"{bucket}/lake/*"),
        ("s3:PutObject", f"{bucket}/lake/*"),
        ("s3:DeleteObject", f"{bucket}/lake/*"),
        ("s3:AbortMultipartUpload", f"{bucket}/lake/*"),
        # Exports in Stripe's layout, beside the lake.
        ("s3:GetObject", f"{bucket}/export/*"),
        ("s3:PutObject", f"{bucket}/export/*"),
        ("s3:DeleteObject", f"{bucket}/export/*"),
        ("s3:AbortMultipartUpload", f"{bucket}/export/*"),
        ("s3:ListBucket", bucket),
    }
    # moto does not attach managed policies made by CloudFormation: read them from the template.
    # SAM adds logging (both) and receiving/deleting from the queue (the worker's event source).
    managed = "arn:aws:iam::aws:policy/service-role/"
    res = translated["Resources"]
    assert res["SchedulerFunctionRole"]["Properties"]["ManagedPolicyArns"] == [f"{managed}AWSLambdaBasicExecutionRole"]
    assert res["WorkerFunctionRole"]["Properties"]["ManagedPolicyArns"] == [
        f"{managed}AWSLambdaBasicExecutionRole",
        f"{managed}AWSLambdaSQSQueueExecutionRole",
    ]


# ------------------------------------------------------------------ Redshift


REDSHIFT_VARIANTS = {
    "cluster with a database user": {"RedshiftCluster": "analytics", "RedshiftDbUser": "loader"},
    "workgroup with IAM credentials": {"RedshiftWorkgroup": "analytics-wg", "RedshiftDatabase": "stripe_db"},
    "workgroup with a secret": {
        "RedshiftWorkgroup": "analytics-wg",
        "RedshiftSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:redshift-loader-AbCdEf",
    },
}


@pytest.mark.parametrize("variant", REDSHIFT_VARIANTS)
def test_redshift_grants_the_data_api_and_a_copy_role_reads_the_lake(aws_client, variant):
    params = {**PARAMS, **REDSHIFT_VARIANTS[variant]}
    deployed = deploy(aws_client, translate(params), params)
    assert deployed["status"] == "CREATE_COMPLETE", deployed["reason"]
    ids, account = deployed["ids"], deployed["account"]
    region = "us-east-1"
    grants = role_grants(aws_client, ids["WorkerFunctionRole"])
    redshift = {g for g in grants if g[0].startswith(("redshift", "secretsmanager:GetSecretValue"))}
    stripe_keys = ("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:{region}:{account}:secret:stripe-pipeline/*")
    redshift.discard(stripe_keys)
    workgroups = f"arn:aws:redshift-serverless:{region}:{account}:workgroup/*"
    want = {("redshift-data:DescribeStatement", "*"), ("redshift-data:GetStatementResult", "*")}
    if "RedshiftCluster" in params:
        cluster = f"arn:aws:redshift:{region}:{account}:cluster:analytics"
        want |= {
            ("redshift-data:ExecuteStatement", cluster),
            ("redshift-data:BatchExecuteStatement", cluster),
            ("redshift:GetClusterCredentials", f"arn:aws:redshift:{region}:{account}:dbuser:analytics/loader"),
            ("redshift:GetClusterCredentials", f"arn:aws:redshift:{region}:{account}:dbname:analytics/dev"),
        }
    else:
        want |= {
            ("redshift-data:ExecuteStatement", workgroups),
            ("redshift-data:BatchExecuteStatement", workgroups),
        }
        if "RedshiftSecretArn" in params:
            want.add(("secretsmanager:GetSecretValue", params["RedshiftSecretArn"]))
        else:
            want.add(("redshift-serverless:GetCredentials", workgroups))
    assert redshift == want
    # The COPY role: Redshift may assume it, and it reads the lake and nothing else.
    iam = aws_client("iam")
    role = ids["RedshiftCopyRole"]
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    if isinstance(trust, str):
        trust = json.loads(trust)
    principals = trust["Statement"][0]["Principal"]["Service"]
    assert set(principals) == {"redshift.amazonaws.com", "redshift-serverless.amazonaws.com"}
    bucket = f"arn:aws:s3:::{ids['LakeBucket']}"
    assert role_grants(aws_client, role) == {("s3:GetObject", f"{bucket}/lake/*"), ("s3:ListBucket", bucket)}
    assert deployed["outputs"]["RedshiftCopyRoleArn"].endswith(role)
    env = aws_client("lambda").get_function_configuration(FunctionName=ids["WorkerFunction"])["Environment"]["Variables"]
    assert env["STRIPE_PIPELINE_REDSHIFT_COPY_ROLE_ARN"] == deployed["outputs"]["RedshiftCopyRoleArn"]
    assert env["STRIPE_PIPELINE_REDSHIFT_DATABASE"] == params.get("RedshiftDatabase", "dev")


# ------------------------------------------------------------------ Snowflake


SNOWFLAKE = {
    "SnowflakeAccount": "myorg-analytics",
    "SnowflakeUser": "STRIPE_LOADER",
    "SnowflakeDatabase": "ANALYTICS",
    "SnowflakeWarehouse": "LOADING",
    "SnowflakeStorageIntegration": "STRIPE_LAKE",
    "SnowflakePrivateKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:snowflake-loader-AbCdEf",
}


@pytest.mark.parametrize("integration", ["not created yet", "described"])
def test_snowflake_reads_its_key_from_the_secret_and_its_integration_role_reads_the_lake(aws_client, integration):
    params = {**PARAMS, **SNOWFLAKE}
    user_arn = "arn:aws:iam::999999999999:user/abc1-s-v2st0000"
    if integration == "described":
        params |= {"SnowflakeIntegrationUserArn": user_arn, "SnowflakeIntegrationExternalId": "AB12_SFCRole=2_xyz"}
    deployed = deploy(aws_client, translate(params), params)
    assert deployed["status"] == "CREATE_COMPLETE", deployed["reason"]
    ids = deployed["ids"]
    # The worker reads the key's secret (besides the Stripe keys) and calls nothing of Redshift.
    grants = role_grants(aws_client, ids["WorkerFunctionRole"])
    assert ("secretsmanager:GetSecretValue", SNOWFLAKE["SnowflakePrivateKeySecretArn"]) in grants
    assert not {g for g in grants if g[0].startswith("redshift")}
    assert "RedshiftCopyRole" not in ids
    env = aws_client("lambda").get_function_configuration(FunctionName=ids["WorkerFunction"])["Environment"]["Variables"]
    assert env["STRIPE_PIPELINE_SNOWFLAKE_ACCOUNT"] == "myorg-analytics"
    assert env["STRIPE_PIPELINE_SNOWFLAKE_PRIVATE_KEY_SECRET_ARN"] == SNOWFLAKE["SnowflakePrivateKeySecretArn"]
    assert env["STRIPE_PIPELINE_SNOWFLAKE_STORAGE_INTEGRATION"] == "STRIPE_LAKE"
    # No parameter or variable holds a key.
    assert not any("PRIVATE KEY" in str(v) for v in env.values())
    # The integration's role reads the lake and nothing else, and trusts Snowflake's identity once known.
    iam = aws_client("iam")
    role = ids["SnowflakeLakeRole"]
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    if isinstance(trust, str):
        trust = json.loads(trust)
    [statement] = trust["Statement"]
    if integration == "described":
        assert statement["Effect"] == "Allow"
        assert statement["Principal"]["AWS"] == user_arn
        assert statement["Condition"]["StringEquals"]["sts:ExternalId"] == "AB12_SFCRole=2_xyz"
    else:
        assert statement["Effect"] == "Deny"
    bucket = f"arn:aws:s3:::{ids['LakeBucket']}"
    assert role_grants(aws_client, role) == {
        ("s3:GetObject", f"{bucket}/lake/*"),
        ("s3:GetObjectVersion", f"{bucket}/lake/*"),
        ("s3:ListBucket", bucket),
    }
    assert deployed["outputs"]["SnowflakeLakeRoleArn"].endswith(role)


# ------------------------------------------------------------------ pushed events


PUSHES = {
    "StripeEventSource": "aws.partner/stripe.com/ed_test_61SxAbCdEf",
    "WebhookSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:stripe-pipeline/webhook-AbCdEf",
}


def test_stripe_events_on_the_partner_bus_and_the_webhook_function_reach_the_push_queue(aws_client):
    params = {**PARAMS, **PUSHES}
    translated = translate(params)
    # moto fails a stack whose outputs read an attribute of a type it cannot create: the WebhookUrl
    # output is checked on the template instead.
    webhook_url = translated["Outputs"].pop("WebhookUrl")
    assert webhook_url["Condition"] == "HasWebhook"
    assert webhook_url["Value"] == {"Fn::GetAtt": ["WebhookFunctionUrl", "FunctionUrl"]}
    # Stripe makes the partner event source when the event destination is made, before the stack.
    account = aws_client("sts").get_caller_identity()["Account"]
    aws_client("events").create_partner_event_source(Name=PUSHES["StripeEventSource"], Account=account)
    deployed = deploy(aws_client, translated, params)
    assert deployed["status"] == "CREATE_COMPLETE", deployed["reason"]
    ids, out = deployed["ids"], deployed["outputs"]
    assert "WebhookFunctionUrl" not in ids
    source = PUSHES["StripeEventSource"]
    push_arn = queue_attributes(aws_client, ids["PushQueue"])["QueueArn"]
    events = aws_client("events")
    # The partner bus is named after its source, and its rule targets the push queue.
    assert events.describe_event_bus(Name=source)["Name"] == source
    [rule] = events.list_rules(EventBusName=source)["Rules"]
    assert json.loads(rule["EventPattern"]) == {"source": [{"prefix": "aws.partner/stripe.com"}]}
    [target] = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=source)["Targets"]
    assert target["Arn"] == push_arn
    # An event from Stripe's source arrives in the push queue as the worker reads it: the envelope.
    detail = {"id": "evt_1", "object": "event", "type": "customer.created", "livemode": False}
    sent = events.put_events(
        Entries=[{"Source": source, "DetailType": "customer.created", "Detail": json.dumps(detail), "EventBusName": source}]
    )
    assert sent["FailedEntryCount"] == 0
    [message] = aws_client("sqs").receive_message(QueueUrl=ids["PushQueue"], WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(message["Body"])
    assert (envelope["source"], envelope["detail-type"], envelope["detail"]) == (source, "customer.created", detail)
    # Only that rule may send to the queue (moto keeps no queue policy made by CloudFormation: the template).
    [statement] = translated["Resources"]["PushQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["StripeEventRule", "Arn"]}}}
    # The webhook function: its URL, its secret's ARN (never the secret), and exactly its grants.
    lam = aws_client("lambda")
    config = lam.get_function_configuration(FunctionName=ids["WebhookFunction"])
    env = config["Environment"]["Variables"]
    assert env["STRIPE_PIPELINE_WEBHOOK_SECRET_ARN"] == PUSHES["WebhookSecretArn"]
    assert env["STRIPE_PIPELINE_PUSH_QUEUE_URL"] == ids["PushQueue"]
    assert (config["Timeout"], config["MemorySize"]) == (10, 256)
    assert lam.get_function_concurrency(FunctionName=ids["WebhookFunction"])["ReservedConcurrentExecutions"] == 5
    assert "WebhookUrl" not in out
    accounts = aws_client("dynamodb").describe_table(TableName=ids["AccountsTable"])["Table"]["TableArn"]
    assert role_grants(aws_client, ids["WebhookFunctionRole"]) == {
        ("dynamodb:GetItem", accounts),
        ("sqs:SendMessage", push_arn),
        ("secretsmanager:GetSecretValue", PUSHES["WebhookSecretArn"]),
    }
    # Anyone may call the URL (Stripe signs, AWS does not): both permissions a public URL needs. moto
    # makes no function URL: read from the template.
    res = translated["Resources"]
    assert res["WebhookFunctionUrl"]["Properties"] == {
        "AuthType": "NONE",
        "TargetFunctionArn": {"Ref": "WebhookFunction"},
    }
    assert res["WebhookFunctionUrlPublicPermissions"]["Properties"]["FunctionUrlAuthType"] == "NONE"
    assert res["WebhookFunctionURLInvokeAllowPublicAccess"]["Properties"]["Action"] == "lambda:InvokeFunction"
    assert res["WebhookFunction"]["Properties"]["LoggingConfig"] == {"LogGroup": {"Ref": "WebhookLogGroup"}}
