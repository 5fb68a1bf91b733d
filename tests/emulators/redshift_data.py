"""A Redshift Data API emulator for the tests: the Data API's JSON protocol in front of a real PostgreSQL.

moto's Redshift Data API runs no SQL and answers in a shape the Rust SDK cannot parse, so the tests start
this instead. It speaks the operations the pipeline calls, the way the service does:

- ExecuteStatement / BatchExecuteStatement return an id at once and run the SQL in the background;
  DescribeStatement shows SUBMITTED, then STARTED, then FINISHED or FAILED (with the server's error text);
  a batch is one transaction, and a failing statement aborts the ones after it.
- GetStatementResult returns typed fields, in pages (NextToken).
- `COPY table (columns) FROM 's3://bucket/key' IAM_ROLE '…' FORMAT AS PARQUET` is carried out by reading
  the Parquet objects under that S3 prefix from the S3 emulator and inserting their rows by position, as
  Redshift maps columnar files; a column-count mismatch fails like Redshift's.
- SQL that PostgreSQL accepts but Redshift does not (indexes, ON CONFLICT, DISTINCT ON, RETURNING, jsonb)
  fails, so the pipeline cannot come to depend on it.

Usage: redshift_data.py --port P --postgres postgres://user@host:port --s3-endpoint http://127.0.0.1:M
The request's Database names the PostgreSQL database. AWS credentials for S3 come from the environment.
"""

import argparse
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import psycopg
import pyarrow.parquet as pq
import io

PAGE_ROWS = 100
MAX_BATCH = 40
# The Data API refuses a statement whose text is over 100 KB, before it reaches the database.
MAX_SQL_BYTES = 100 * 1024
NOT_REDSHIFT = [
    (re.compile(r"\bCREATE\s+(UNIQUE\s+)?INDEX\b", re.I), "CREATE INDEX is not supported in Redshift"),
    (re.compile(r"\bON\s+CONFLICT\b", re.I), 'syntax error at or near "ON"'),
    (re.compile(r"\bDISTINCT\s+ON\b", re.I), 'syntax error at or near "ON"'),
    (re.compile(r"\bRETURNING\b", re.I), 'syntax error at or near "RETURNING"'),
    (re.compile(r"\bjsonb\b", re.I), 'type "jsonb" does not exist'),
]
COPY = re.compile(
    r"^\s*COPY\s+(?P<table>[^\s(]+)\s*(?:\((?P<cols>[^)]*)\))?\s+FROM\s+'(?P<uri>[^']*)'\s+(?P<opts>.*?)\s*;?\s*$",
    re.I | re.S,
)


class Failure(Exception):
    pass


def check_size(sql):
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise ValueError("Cannot process query string larger than 100kB")


class Statement:
    def __init__(self, sqls, request, batch):
        self.id = str(uuid.uuid4())
        self.sqls = sqls
        self.request = request
        self.batch = batch
        self.status = "SUBMITTED"
        self.created = time.time()
        self.updated = self.created
        self.error = None
        self.subs = [
            {"status": "SUBMITTED", "rows": -1, "result": None, "error": None, "updated": self.created}
            for _ in sqls
        ]

    def describe_sub(self, i):
        sub = self.subs[i]
        out = {
            "Id": f"{self.id}:{i + 1}",
            "Status": sub["status"],
            "QueryString": self.sqls[i],
            "CreatedAt": self.created,
            "UpdatedAt": sub["updated"],
            "Duration": int((sub["updated"] - self.created) * 1e9),
            "HasResultSet": sub["result"] is not None,
            "ResultRows": sub["rows"],
            "ResultSize": 0,
            "RedshiftQueryId": i + 1,
        }
        if sub["error"]:
            out["Error"] = sub["error"]
        return out

    def describe(self):
        out = {
            "Id": self.id,
            "Status": self.status,
            "QueryString": self.sqls[0] if not self.batch else "",
            "CreatedAt": self.created,
            "UpdatedAt": self.updated,
            "Duration": int((self.updated - self.created) * 1e9),
            "HasResultSet": (not self.batch) and self.subs[0]["result"] is not None,
            "ResultRows": sum(max(s["rows"], 0) for s in self.subs),
            "ResultSize": 0,
            "RedshiftPid": 4242,
            "RedshiftQueryId": 1,
            "Database": self.request["Database"],
        }
        for key in ("ClusterIdentifier", "WorkgroupName", "DbUser", "SecretArn"):
            if self.request.get(key):
                out[key] = self.request[key]
        if self.error:
            out["Error"] = self.error
        if self.batch:
            out["SubStatements"] = [self.describe_sub(i) for i in range(len(self.sqls))]
        return out


def serialization_violation(st):
    """How Redshift words a transaction it aborted for a conflict with a concurrent one."""
    return f"1023 DETAIL: Serializable isolation violation on a table in {st.request['Database']}"


class Emulator:
    def __init__(self, postgres, s3_endpoint):
        self.postgres = postgres.rstrip("/")
        self.s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        self.statements = {}
        self.lock = threading.Lock()

    # --- SQL ---------------------------------------------------------------------------------------

    def copy(self, cur, sql, match):
        opts = match["opts"]
        if not re.search(r"\bFORMAT\s+AS\s+PARQUET\b", opts, re.I):
            raise Failure("the emulator carries out COPY ... FORMAT AS PARQUET only")
        if not re.search(r"\bIAM_ROLE\s+('arn:aws:iam::\d{12}:role/[^']+'|default)", opts, re.I):
            raise Failure("COPY needs IAM_ROLE 'arn:aws:iam::<account>:role/<name>' (or IAM_ROLE default)")
        uri = match["uri"]
        m = re.match(r"^s3://([^/]+)/(.*)$", uri)
        if not m:
            raise Failure(f"Invalid S3 URI: {uri}")
        bucket, prefix = m.groups()
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        if not keys:
            raise Failure(f"The specified S3 prefix '{prefix}' does not exist")
        columns = [c.strip() for c in match["cols"].split(",")] if match["cols"] else None
        total = 0
        for key in keys:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            table = pq.read_table(io.BytesIO(body))
            if columns is not None and len(columns) != table.num_columns:
                raise Failure(
                    f"Spectrum Scan Error: The column count of the file s3://{bucket}/{key} "
                    f"({table.num_columns}) does not match the column list ({len(columns)})"
                )
            target = f"{match['table']} ({', '.join(columns)})" if columns else match["table"]
            with cur.copy(f"COPY {target} FROM STDIN") as copy:
                for row in table.to_pylist():
                    copy.write_row(list(row.values()))
            total += table.num_rows
        return total

    def execute_one(self, cur, sql):
        for pattern, message in NOT_REDSHIFT:
            if pattern.search(sql):
                raise Failure(message)
        match = COPY.match(sql)
        if match:
            return self.copy(cur, sql, match), None
        cur.execute(sql)
        if cur.description is None:
            return cur.rowcount, None
        names = [(d.name, d.type_code) for d in cur.description]
        rows = cur.fetchall()
        return len(rows), (names, rows)

    def run(self, st):
        # A moment in each state, so clients see the progression and must poll.
        time.sleep(0.02)
        st.status = "STARTED"
        st.updated = time.time()
        time.sleep(0.02)
        failed = None
        try:
            with psycopg.connect(f"{self.postgres}/{st.request['Database']}", autocommit=True) as conn:
                # A batch is one transaction; so is a single statement. Redshift's transactions are
                # serializable: of two that conflict, one is aborted (error 1023, below).
                conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
                with conn.transaction(), conn.cursor() as cur:
                    for i, sql in enumerate(st.sqls):
                        sub = st.subs[i]
                        sub["status"] = "STARTED"
                        try:
                            sub["rows"], sub["result"] = self.execute_one(cur, sql)
                        except (Failure, psycopg.Error) as e:
                            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                            if isinstance(e, psycopg.errors.SerializationFailure):
                                text = serialization_violation(st)
                            sub["status"], sub["error"] = "FAILED", f"ERROR: {text}"
                            sub["updated"] = time.time()
                            failed = (i, sub["error"])
                            raise
                        sub["status"] = "FINISHED"
                        sub["updated"] = time.time()
        except (Failure, psycopg.Error) as e:
            if failed is None:
                # PostgreSQL may find the conflict only at COMMIT.
                text = serialization_violation(st) if isinstance(e, psycopg.errors.SerializationFailure) else e
                failed = (0, f"ERROR: {text}")
        except Exception as e:  # noqa: BLE001 - reported as the statement's error, like the service
            failed = (0, f"ERROR: {type(e).__name__}: {e}")
        if failed:
            for sub in st.subs:
                if sub["status"] != "FAILED":
                    sub["status"] = "ABORTED"
            st.error = failed[1] if not st.batch else f"Query #{failed[0] + 1} failed with {failed[1]}"
            st.status = "FAILED"
        else:
            st.status = "FINISHED"
        st.updated = time.time()

    # --- API ---------------------------------------------------------------------------------------

    def submit(self, request, sqls, batch):
        if not request.get("Database"):
            raise ValueError("Database is required")
        if bool(request.get("WorkgroupName")) == bool(request.get("ClusterIdentifier")):
            raise ValueError("Either ClusterIdentifier or WorkgroupName is required, not both")
        if request.get("DbUser") and request.get("SecretArn"):
            raise ValueError("DbUser and SecretArn cannot be used together")
        st = Statement(sqls, request, batch)
        with self.lock:
            self.statements[st.id] = st
        threading.Thread(target=self.run, args=(st,), daemon=True).start()
        out = {"Id": st.id, "CreatedAt": st.created, "Database": request["Database"]}
        for key in ("ClusterIdentifier", "WorkgroupName", "DbUser", "SecretArn"):
            if request.get(key):
                out[key] = request[key]
        return out

    def lookup(self, statement_id):
        base, _, sub = (statement_id or "").partition(":")
        st = self.statements.get(base)
        if st is None:
            raise LookupError(f"Query does not exist: {statement_id}")
        return st, (int(sub) - 1 if sub else None)

    def handle(self, op, req):
        if op == "ExecuteStatement":
            if not req.get("Sql"):
                raise ValueError("Sql is required")
            check_size(req["Sql"])
            return self.submit(req, [req["Sql"]], batch=False)
        if op == "BatchExecuteStatement":
            sqls = req.get("Sqls") or []
            if not 1 <= len(sqls) <= MAX_BATCH:
                raise ValueError(f"Sqls must hold 1 to {MAX_BATCH} statements, got {len(sqls)}")
            for sql in sqls:
                check_size(sql)
            return self.submit(req, sqls, batch=True)
        if op == "ListStatements":
            # The statements of this emulator (of any database), newest first, optionally of one
            # status; no paging (a test's statements fit one answer).
            status = req.get("Status", "ALL")
            with self.lock:
                chosen = [st for st in self.statements.values() if status == "ALL" or st.status == status]
            chosen.sort(key=lambda st: st.created, reverse=True)
            return {"Statements": [{
                "Id": st.id,
                "Status": st.status,
                "IsBatchStatement": st.batch,
                "CreatedAt": st.created,
                "UpdatedAt": st.updated,
                **({"QueryStrings": st.sqls} if st.batch else {"QueryString": st.sqls[0]}),
            } for st in chosen]}
        if op == "DescribeStatement":
            st, sub = self.lookup(req.get("Id"))
            return st.describe() if sub is None else st.describe_sub(sub)
        if op == "GetStatementResult":
            st, sub = self.lookup(req.get("Id"))
            if sub is None and st.batch:
                raise ValueError("use the Id of a sub-statement (id:n) for a batch's results")
            part = st.subs[sub or 0]
            if part["status"] != "FINISHED":
                raise LookupError(f"Query {req.get('Id')} has not finished (status {part['status']})")
            if part["result"] is None:
                raise LookupError(f"Query {req.get('Id')} does not have result")
            names, rows = part["result"]
            start = int(req.get("NextToken") or 0)
            page = rows[start : start + PAGE_ROWS]
            out = {
                "Records": [[field(v) for v in row] for row in page],
                "ColumnMetadata": [{"name": n, "typeName": str(t)} for n, t in names],
                "TotalNumRows": len(rows),
            }
            if start + PAGE_ROWS < len(rows):
                out["NextToken"] = str(start + PAGE_ROWS)
            return out
        raise NotImplementedError(op)


def field(v):
    if v is None:
        return {"isNull": True}
    if isinstance(v, bool):
        return {"booleanValue": v}
    if isinstance(v, int):
        return {"longValue": v}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def serve(port, emulator):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            op = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
            try:
                reply, status = emulator.handle(op, json.loads(body or b"{}")), 200
            except ValueError as e:
                reply, status = {"__type": "ValidationException", "message": str(e)}, 400
            except LookupError as e:
                reply, status = {"__type": "ResourceNotFoundException", "message": str(e)}, 400
            except NotImplementedError as e:
                reply, status = {"__type": "UnknownOperationException", "message": f"not emulated: {e}"}, 400
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--postgres", required=True, help="postgres://user@host:port (no database)")
    parser.add_argument("--s3-endpoint", required=True)
    args = parser.parse_args()
    serve(args.port, Emulator(args.postgres, args.s3_endpoint))
