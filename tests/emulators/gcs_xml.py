#!/usr/bin/env python
"""gcp-storage-emulator + the GCS *XML API* subset used by Rust object_store 0.14.

object_store's GoogleCloudStorage talks only the XML API:
  PUT    {base}/{bucket}/{obj}                      put (needs ETag in response)
  PUT    {base}/{bucket}/{obj} + x-goog-copy-source copy
  GET    {base}/{bucket}/{obj}  (Range: bytes=a-b | a- | -n)
  HEAD   {base}/{bucket}/{obj}                      (needs ETag, Last-Modified, Content-Length)
  DELETE {base}/{bucket}/{obj}
  GET    {base}/{bucket}?list-type=2&prefix=&delimiter=&start-after=&max-keys=&continuation-token=
         -> S3-style <ListBucketResult> XML
  x-goog-if-generation-match (0 = create-only) -> 412 on mismatch
Stock gcp-storage-emulator answers HEAD/DELETE/list with 501, crashes on copy,
and sends no ETag/Last-Modified, so every object_store call fails without this.

Usage: python gcs_xml_emulator.py start --host 127.0.0.1 --port N --in-memory \
           --default-bucket testbucket
(same CLI as `gcp-storage-emulator`; JSON API routes are unchanged).
"""
import time
from base64 import b64decode
from datetime import datetime, timezone
from email.utils import format_datetime
from http import HTTPStatus
from urllib.parse import unquote
from xml.sax.saxutils import escape

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

GEN_MATCH = "x-goog-if-generation-match"


def _etag(obj):
    md5 = obj.get("md5Hash")
    return '"{}"'.format(b64decode(md5).hex() if md5 else obj.get("generation"))


def _updated(obj):
    s = obj.get("updated") or obj.get("timeCreated")
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def _meta_headers(res, obj):
    res["ETag"] = _etag(obj)
    res["Last-Modified"] = format_datetime(_updated(obj), usegmt=True)
    res["x-goog-generation"] = str(obj.get("generation"))
    res["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
    res["Accept-Ranges"] = "bytes"


def _error(res, status, code, msg=""):
    res.status = status
    res["Content-type"] = "application/xml"
    res._content = "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{}</Code><Message>{}</Message></Error>".format(
        code, escape(msg)
    )


def _precondition_ok(req, res, storage, bucket, name):
    want = req.get_header(GEN_MATCH)
    if want is None:
        return True
    try:
        cur = storage.get_file_obj(bucket, name)["generation"]
    except NotFound:
        cur = "0"
    if str(want) != str(cur):
        _error(res, HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed",
               "At least one of the pre-conditions you specified did not hold.")
        return False
    return True


def _store(req, res, storage, bucket, name, data, content_type, extra=None):
    obj = objects._make_object_resource(
        req.base_url, bucket, name, content_type, str(len(data)))
    obj["generation"] = str(time.time_ns() // 1000)  # microseconds, like GCS
    if extra:
        for k in ("metadata", "cacheControl", "contentDisposition",
                  "contentEncoding", "contentLanguage"):
            if extra.get(k) is not None:
                obj[k] = extra[k]
    obj = objects._checksums(data, obj)
    storage.create_file(bucket, name, data, obj)
    _meta_headers(res, obj)


def xml_put(req, res, storage):
    bucket, name = req.params["bucket_name"], req.params["object_id"]
    if bucket not in storage.buckets:
        return _error(res, HTTPStatus.NOT_FOUND, "NoSuchBucket")
    if not _precondition_ok(req, res, storage, bucket, name):
        return
    src = req.get_header("x-goog-copy-source")
    if src:  # "bucket/url-encoded-object"
        src_bucket, _, src_name = unquote(src).lstrip("/").partition("/")
        try:
            src_obj = storage.get_file_obj(src_bucket, src_name)
            data = storage.get_file(src_bucket, src_name)
        except NotFound:
            return _error(res, HTTPStatus.NOT_FOUND, "NoSuchKey")
        _store(req, res, storage, bucket, name, data,
               src_obj.get("contentType") or "application/octet-stream", src_obj)
        res["Content-type"] = "application/xml"
        res._content = "<CopyObjectResult><LastModified>{}</LastModified><ETag>{}</ETag></CopyObjectResult>".format(
            _updated(storage.get_file_obj(bucket, name)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            escape(res["ETag"]))
        return
    h = req._request_handler  # raw body: req.data would json/multipart-decode it
    data = server._read_raw_data(h) or b""  # stored as sent (Content-Encoding kept)
    meta = {k[len("x-goog-meta-"):]: v for k, v in req._request_handler.headers.items()
            if k.lower().startswith("x-goog-meta-")}
    extra = {"metadata": meta or None,
             "cacheControl": req.get_header("Cache-Control"),
             "contentDisposition": req.get_header("Content-Disposition"),
             "contentEncoding": req.get_header("Content-Encoding"),
             "contentLanguage": req.get_header("Content-Language")}
    _store(req, res, storage, bucket, name, data,
           req.get_header("Content-Type", "application/octet-stream"), extra)


def _xml_get(req, res, storage, head):
    bucket, name = req.params["bucket_name"], req.params["object_id"]
    try:
        obj = storage.get_file_obj(bucket, name)
        data = storage.get_file(bucket, name, show_error=False)
    except NotFound:
        return _error(res, HTTPStatus.NOT_FOUND, "NoSuchKey", "The specified key does not exist.")
    gen = req.query.get("generation")
    if gen and gen[0] != str(obj.get("generation")):
        return _error(res, HTTPStatus.NOT_FOUND, "NoSuchKey")
    etag = _etag(obj)
    im, inm = req.get_header("If-Match"), req.get_header("If-None-Match")
    if im is not None and im.strip() not in ("*", etag):
        return _error(res, HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed")
    if inm is not None and inm.strip() in ("*", etag):
        _meta_headers(res, obj)
        res.status = HTTPStatus.NOT_MODIFIED
        return
    _meta_headers(res, obj)
    for hdr, key in (("Cache-Control", "cacheControl"), ("Content-Disposition", "contentDisposition"),
                     ("Content-Encoding", "contentEncoding"), ("Content-Language", "contentLanguage")):
        if obj.get(key):
            res[hdr] = obj[key]
    for k, v in (obj.get("metadata") or {}).items():
        if v is not None:
            res["x-goog-meta-{}".format(k)] = str(v)
    total = len(data)
    rng = req.get_header("Range")
    if rng and rng.startswith("bytes="):
        a, _, b = rng[6:].partition("-")
        if a == "":
            start, end = max(0, total - int(b)), total - 1
        else:
            start, end = int(a), (min(int(b), total - 1) if b else total - 1)
        if start >= total or start > end:
            res["Content-Range"] = "bytes */{}".format(total)
            return _error(res, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "InvalidRange")
        data = data[start:end + 1]
        res["Content-Range"] = "bytes {}-{}/{}".format(start, end, total)
        res.status = HTTPStatus.PARTIAL_CONTENT
    res.write_file(data, content_type=obj.get("contentType") or "application/octet-stream")
    if head:
        res._head = True


def xml_get(req, res, storage):
    _xml_get(req, res, storage, head=False)


def xml_head(req, res, storage):
    _xml_get(req, res, storage, head=True)


def xml_delete(req, res, storage):
    bucket, name = req.params["bucket_name"], req.params["object_id"]
    if not _precondition_ok(req, res, storage, bucket, name):
        return
    try:
        storage.delete_file(bucket, name)
    except NotFound:
        return _error(res, HTTPStatus.NOT_FOUND, "NoSuchKey", "The specified key does not exist.")
    res.status = HTTPStatus.NO_CONTENT


def xml_list(req, res, storage):
    bucket = req.params["bucket_name"]
    # list LastModified truncated to seconds so it equals HEAD's Last-Modified
    q = lambda k: req.query.get(k, [None])[0]  # noqa: E731
    prefix, delim = q("prefix") or "", q("delimiter")
    start_after = q("continuation-token") or q("start-after")
    max_keys = int(q("max-keys") or 1000)
    try:
        files, prefixes = storage.get_file_list(bucket, prefix or None, delim or None)
    except NotFound:
        return _error(res, HTTPStatus.NOT_FOUND, "NoSuchBucket")
    entries = sorted([(f["name"], f) for f in files] + [(p, None) for p in prefixes],
                     key=lambda e: e[0])
    if start_after:
        entries = [e for e in entries if e[0] > start_after]
    page, truncated = entries[:max_keys], len(entries) > max_keys
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<ListBucketResult xmlns="http://doc.s3.amazonaws.com/2006-03-01">',
           "<Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{}</MaxKeys>"
           "<IsTruncated>{}</IsTruncated>".format(
               escape(bucket), escape(prefix), len(page), max_keys, str(truncated).lower())]
    if delim:
        out.append("<Delimiter>{}</Delimiter>".format(escape(delim)))
    if truncated:
        out.append("<NextContinuationToken>{}</NextContinuationToken>".format(escape(page[-1][0])))
    for key, f in page:
        if f is None:
            out.append("<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>".format(escape(key)))
        else:
            out.append("<Contents><Key>{}</Key><Generation>{}</Generation><MetaGeneration>{}</MetaGeneration>"
                       "<LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size>"
                       "<StorageClass>STANDARD</StorageClass></Contents>".format(
                           escape(key), f.get("generation"), f.get("metageneration", "1"),
                           _updated(f).strftime("%Y-%m-%dT%H:%M:%S.000Z"), escape(_etag(f)), f.get("size")))
    out.append("</ListBucketResult>")
    res["Content-type"] = "application/xml"
    res._content = "".join(out)


# The stock last route is "^/(bucket)/(object)$" {GET: download, PUT: xml_upload}; replace it.
_routes = [r for r in server.HANDLERS if not r[0].startswith(r"^/(?P<bucket_name>")]
_routes += [
    # object_store percent-encodes the bucket too ("my-bkt" -> "my%2Dbkt"): allow %XX
    (r"^/(?P<bucket_name>[-.\w%]+)/?$", {"GET": xml_list}),
    (r"^/(?P<bucket_name>[-.\w%]+)/(?P<object_id>.*[^/]+)$",
     {"GET": xml_get, "HEAD": xml_head, "PUT": xml_put, "DELETE": xml_delete}),
]
server.HANDLERS = tuple(_routes)

_orig_close = server.Response.close


def _close(self):
    if getattr(self, "_head", False):  # HEAD: headers incl. real Content-Length, no body
        h = self._handler
        h.send_response(self.status.value, self.status.phrase)
        for k, v in self._headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(self._content)))
        h.end_headers()
        return
    if self._handler.command == "HEAD":  # error/304 on HEAD: no body either
        self._content = b""
    _orig_close(self)


server.Response.close = _close
server.RequestHandler.do_HEAD = lambda self: server.Router(self).handle("HEAD")
# single-threaded server; default listen backlog 5 is too small for object_store's
# 10-way concurrent delete_stream / parallel tests
server.server.HTTPServer.request_queue_size = 128

if __name__ == "__main__":
    main()
