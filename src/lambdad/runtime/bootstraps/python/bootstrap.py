"""lambdad's runtime for the managed runtimes ``python3.9`` to ``python3.14``.

lambdad starts this file as ``<interpreter> bootstrap.py`` with no arguments; everything comes from
the environment. It does what AWS's ``/var/runtime/bootstrap.py`` and ``awslambdaric`` do: build
``sys.path``, import the handler named by ``_HANDLER``, then loop on the Runtime API (2018-06-01),
calling the handler once per event and posting its result or error. Where user code or a log reader
can see it (error bodies, log lines, the context object), the behaviour follows awslambdaric.

Only the standard library is used, and the code runs unchanged on CPython 3.9 to 3.14. Importing the
module has no side effects, so a zygote can import it once and call ``main()`` in each forked child.

Known differences from awslambdaric (which encodes with simplejson): a namedtuple in a result
becomes an array rather than an object, and a bytes dict key is a ``Runtime.MarshalError``; a
result the response body cannot carry (a lone surrogate) is a ``Runtime.MarshalError`` where
awslambdaric crashes; an X-Ray cause header the Runtime API rejects is dropped and the error sent
again without it.

Exit status 1 means init failed (after ``POST /runtime/init/error``) or the Runtime API failed: it
answered 5xx, its answer was unusable, or the connection could not be re-opened. A ``SystemExit`` or
``KeyboardInterrupt`` raised by user code ends the process, as on AWS.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Callable, MutableMapping, NoReturn

_API = "/2018-06-01/runtime"
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
_TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
_MAX_XRAY_CAUSE = 1024 * 1024  # awslambdaric drops the X-Ray header at 1 MiB or more
_INDENT = "\u00a0"  # awslambdaric turns traceback indentation into NO-BREAK SPACE in logs
_UNHANDLED_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code. "
    "However, in rare cases, a Lambda runtime update can cause unexpected function behavior. "
    "For functions using managed runtimes, runtime updates can be triggered by a function change, "
    "or can be applied automatically. To determine if the runtime has been updated, check the "
    "runtime version in the INIT_START log entry. If this error correlates with a change in the "
    "runtime version, you may be able to mitigate this error by temporarily rolling back to the "
    "previous runtime version. For more information, see "
    "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html\r"  # sic: awslambdaric 4.x
)
_CONTEXT_REPR = (
    "aws_request_id",
    "log_group_name",
    "log_stream_name",
    "function_name",
    "memory_limit_in_mb",
    "function_version",
    "invoked_function_arn",
    "client_context",
    "identity",
    "tenant_id",
)
# LogRecord attributes the JSON formatter does not copy into the record as extra fields.
_RESERVED_LOG_FIELDS = frozenset((
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
    "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
    "relativeCreated", "thread", "threadName", "processName", "process",
    "aws_request_id", "tenant_id", "_frame_type",
))  # fmt: skip


class FaultError(Exception):
    """A failure reported under a ``Runtime.*`` error type instead of the exception's class name."""

    MARSHAL = "Runtime.MarshalError"
    UNMARSHAL = "Runtime.UnmarshalError"
    USER_CODE_SYNTAX = "Runtime.UserCodeSyntaxError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    IMPORT_MODULE = "Runtime.ImportModuleError"
    BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    CONTEXT_UNMARSHAL = "Runtime.LambdaContextUnmarshalError"

    def __init__(self, error_type: str, msg: str, trace: list[str] | None = None) -> None:
        super().__init__(msg)
        self.error_type = error_type
        self.msg = msg
        self.trace = trace


class RuntimeApiError(Exception):
    """The Runtime API failed or is gone; the process should exit."""


# --- sys.path and the handler ---------------------------------------------------------------


def prepare_sys_path(environ: MutableMapping[str, str]) -> None:
    """Build ``sys.path`` as the managed runtime does, minus this bootstrap's own directory.

    Order: the task root, then (only when ``PYTHONPATH`` is unset) the layer directories
    ``/opt/python/lib/pythonX.Y/site-packages`` and ``/opt/python``; ``.pth`` files in them load.
    An unset ``PYTHONPATH`` then becomes ``LAMBDA_RUNTIME_DIR``, as on AWS.
    """
    import site

    here = os.path.abspath(__file__)
    own_dirs = {os.path.dirname(here), os.path.dirname(os.path.realpath(here))}
    sys.path[:] = [entry for entry in sys.path if entry and os.path.abspath(entry) not in own_dirs]
    task_root = environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    layers = "PYTHONPATH" not in environ
    # Layers are at /opt; where a sandbox cannot mount them there, lambdad names their
    # directory in _LAMBDAD_OPT (an underscore name, which no function variable can be).
    opt = environ.get("_LAMBDAD_OPT", "/opt")
    layer_dirs = [
        "%s/python/lib/python%d.%d/site-packages" % ((opt, *sys.version_info[:2])),
        opt + "/python",
    ]
    if layers:
        sys.path[0:0] = layer_dirs
    sys.path.insert(0, task_root)
    site.addsitedir(task_root)
    if layers:
        for layer_dir in layer_dirs:
            site.addsitedir(layer_dir)
        if "LAMBDA_RUNTIME_DIR" in environ:
            environ["PYTHONPATH"] = environ["LAMBDA_RUNTIME_DIR"]


def load_handler(spec: str) -> Callable[..., Any]:
    """Import ``module.function`` (the module part may use ``/``) and return the function.

    Raises FaultError with awslambdaric's error types and messages. Any other exception raised
    while the module runs its top-level code propagates unchanged.
    """
    import importlib

    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as exc:
        raise FaultError(
            FaultError.MALFORMED_HANDLER_NAME, "Bad handler '{}': {}".format(spec, exc)
        ) from None
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise FaultError(
            FaultError.BUILT_IN_MODULE_CONFLICT,
            "Cannot use built-in module {} as a handler module".format(module_name),
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise FaultError(
            FaultError.IMPORT_MODULE, "Unable to import module '{}': {}".format(module_name, exc)
        ) from None
    except SyntaxError as exc:
        trace = ['  File "%s" Line %s\n    %s' % (exc.filename, exc.lineno, exc.text)]
        raise FaultError(
            FaultError.USER_CODE_SYNTAX,
            "Syntax error in module '{}': {}".format(module_name, exc),
            trace,
        ) from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise FaultError(
            FaultError.HANDLER_NOT_FOUND,
            "Handler '{}' missing on module '{}'".format(function_name, module_name),
        ) from None


# --- JSON in and out --------------------------------------------------------------------------


class _Encoder(json.JSONEncoder):
    """awslambdaric's simplejson encoder, rebuilt on the standard library.

    Decimals are written as their exact text (NaN as ``NaN``) and bytes inside a result are decoded
    as UTF-8, as simplejson does. The C encoder cannot emit raw text from ``default``, so each
    Decimal goes out as a marker string that ``splice`` then replaces.
    """

    def __init__(self, ensure_ascii: bool) -> None:
        super().__init__(ensure_ascii=ensure_ascii, allow_nan=True)
        self._decimals: list[str] = []
        self._marker = ""

    def default(self, o: Any) -> Any:
        if isinstance(o, bytes):
            return o.decode("utf-8")
        decimal = sys.modules.get("decimal")  # no Decimal can exist before the module is imported
        if decimal is not None and isinstance(o, decimal.Decimal):
            if o.is_nan():
                return float("nan")
            if not self._marker:
                self._marker = "\x00lambdad-decimal-%s-" % os.urandom(8).hex()
            self._decimals.append(str(o))
            return "%s%d\x00" % (self._marker, len(self._decimals) - 1)
        return super().default(o)

    def splice(self, text: str) -> str:
        if not self._decimals:
            return text
        import re

        pattern = re.escape(json.dumps(self._marker)[:-1]) + r'(\d+)\\u0000"'
        return re.sub(pattern, lambda match: self._decimals[int(match.group(1))], text)


class Marshaller:
    """Turns events into Python values and results into response bodies, as awslambdaric does."""

    def __init__(self, ensure_ascii: bool) -> None:
        self.ensure_ascii = ensure_ascii

    def to_json(self, value: Any) -> str:
        encoder = _Encoder(self.ensure_ascii)
        return encoder.splice(encoder.encode(value))

    def unmarshal(self, body: bytes, content_type: str | None) -> Any:
        """Decode ``body`` as JSON when the content type is exactly application/json."""
        if content_type != "application/json":
            return body
        try:
            return json.loads(body)
        except Exception as exc:
            raise FaultError(
                FaultError.UNMARSHAL, "Unable to unmarshal input: {}".format(exc)
            ) from None

    def marshal(self, result: Any) -> tuple[bytes, str]:
        """The response body and its content type; raises FaultError when not serialisable."""
        if isinstance(result, bytes):
            return result, "application/unknown"
        try:
            return self.to_json(result).encode("utf-8"), "application/json"
        except Exception as exc:
            raise FaultError(
                FaultError.MARSHAL, "Unable to marshal response: {}".format(exc)
            ) from None


# --- The context object (names and repr as awslambdaric's, which user code may print) ----------


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self) -> str:
        return _slots_repr(self)


class Client:
    __slots__ = [  # noqa: RUF023 - the order is the repr's, as in awslambdaric
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    ]

    def __repr__(self) -> str:
        return _slots_repr(self)


class ClientContext:
    __slots__ = ["custom", "env", "client"]  # noqa: RUF023 - the order is the repr's

    def __repr__(self) -> str:
        return _slots_repr(self)


def _slots_repr(obj: Any) -> str:
    fields = ",".join("%s=%s" % (name, getattr(obj, name)) for name in type(obj).__slots__)
    return "%s([%s])" % (type(obj).__name__, fields)


def _from_dict(cls: Any, values: dict[str, Any] | None) -> Any:
    if values is None:
        return None
    obj = cls()
    for name in cls.__slots__:
        setattr(obj, name, values.get(name))
    return obj


class LambdaContext:
    """The handler's second argument, with the attributes of awslambdaric's LambdaContext."""

    def __init__(
        self,
        invoke_id: str,
        client_context: dict[str, Any] | None,
        cognito_identity: dict[str, Any] | None,
        epoch_deadline_time_in_ms: int,
        invoked_function_arn: str | None = None,
        tenant_id: str | None = None,
    ) -> None:
        environ = os.environ
        self.aws_request_id = invoke_id
        self.log_group_name = environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a str on AWS
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self._w3c_fields = _pop_w3c(client_context)
        self.client_context = _from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _from_dict(Client, self.client_context.client)
        self.identity = _from_dict(CognitoIdentity, {})
        if cognito_identity is not None:
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self._epoch_deadline_time_in_ms = epoch_deadline_time_in_ms

    def get_remaining_time_in_millis(self) -> int:
        remaining = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def w3c(self) -> dict[str, str]:
        """The W3C trace-context fields the caller sent in the client context."""
        return dict(self._w3c_fields)

    def log(self, msg: Any) -> None:
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        fields = ",".join("%s=%s" % (name, getattr(self, name)) for name in _CONTEXT_REPR)
        return "%s([%s])" % (type(self).__name__, fields)


def _pop_w3c(client_context: Any) -> dict[str, str]:
    if not isinstance(client_context, dict) or "w3c" not in client_context:
        return {}
    raw = client_context.pop("w3c")
    if not isinstance(raw, dict):
        return {}
    names = ("traceparent", "tracestate", "baggage")
    return {name: raw[name] for name in names if isinstance(raw.get(name), str)}


def _parse_json_header(value: str, name: str) -> Any:
    try:
        return json.loads(value)
    except Exception as exc:
        raise FaultError(
            FaultError.CONTEXT_UNMARSHAL, "Unable to parse {} JSON: {}".format(name, exc)
        ) from None


# --- Logging ----------------------------------------------------------------------------------


class _Current:
    """The invocation being served, for log lines."""

    request_id: str | None = None
    tenant_id: str | None = None


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _Current.request_id or ""
        record.tenant_id = _Current.tenant_id
        return True


class _StdoutHandler(logging.Handler):
    """Writes formatted records to whatever ``sys.stdout`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record))
        except Exception:
            self.handleError(record)


class JsonFormatter(logging.Formatter):
    """awslambdaric's JSON log record: fixed fields, exception details, then any extra fields."""

    def __init__(self) -> None:
        super().__init__(datefmt=_DATE_FORMAT)
        from datetime import datetime, timezone

        self._datetime, self._utc = datetime, timezone.utc
        self._encode = json.JSONEncoder(ensure_ascii=False).encode

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = self._datetime.fromtimestamp(record.created, tz=self._utc)
        return moment.strftime(_DATE_FORMAT + ".%f")[:-3] + "Z"

    def format(self, record: logging.LogRecord) -> str:
        record.levelno = min(50, max(0, record.levelno)) // 10 * 10
        record.levelname = logging.getLevelName(record.levelno)
        exc_info = record.exc_info if record.exc_info and record.exc_info[0] else None
        result: dict[str, Any] = {
            "timestamp": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": None,
            "errorType": None,
            "errorMessage": None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": None,
        }
        if exc_info:
            import traceback

            result["stackTrace"] = traceback.format_tb(exc_info[2])
            result["errorType"] = exc_info[0].__name__
            result["errorMessage"] = str(exc_info[1])
            result["location"] = "%s:%s:%s" % (record.pathname, record.funcName, record.lineno)
        if getattr(record, "tenant_id", None) is not None:
            result["tenantId"] = record.tenant_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED_LOG_FIELDS and key not in result:
                result[key] = value
        return self._encode({k: v for k, v in result.items() if v is not None}) + "\n"


def setup_logging(json_format: bool, level: str) -> None:
    """Give the root logger awslambdaric's stdout handler, in Text or JSON format, in UTC."""
    logging.Formatter.converter = time.gmtime
    handler = _StdoutHandler()
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, _DATE_FORMAT))
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    if isinstance(logging.getLevelName(level), int):
        root.setLevel(level)
    root.addHandler(handler)


def log_error(error: dict[str, Any], json_format: bool, marshaller: Marshaller) -> None:
    """Log an unhandled error as one record, the way awslambdaric does (no logging prefix)."""
    if json_format:
        record = {"timestamp": time.strftime(_DATE_FORMAT, time.gmtime()), "level": "ERROR"}
        record.update(error)
        _write_stdout(marshaller.to_json(record) + "\n")
        return
    headline = "[ERROR]"
    if error["errorType"]:
        headline += " " + error["errorType"]
    if error["errorMessage"]:
        headline += (":" if error["errorType"] else "") + " " + error["errorMessage"]
    lines = [headline, "Traceback (most recent call last):"]
    for element in error["stackTrace"]:
        lines.extend(_nbsp_indent(line) for line in element.splitlines() or [""])
    _write_stdout("\r".join(lines) + "\n")


def _nbsp_indent(line: str) -> str:
    stripped = line.lstrip(" ")
    return _INDENT * (len(line) - len(stripped)) + stripped


def _write_stdout(text: str) -> None:
    try:  # noqa: SIM105 - contextlib would be one more import at cold start
        sys.stdout.write(text)
    except Exception:  # a closed or replaced stdout must not stop the runtime
        pass


def _flush_streams() -> None:
    """Flush output so lambdad sees it before the result it precedes."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:  # noqa: SIM105 - contextlib would be one more import at cold start
            stream.flush()
        except Exception:  # user code may have closed or replaced a stream
            pass


def _line_buffer_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib would be one more import at cold start
            stream.reconfigure(line_buffering=True)
        except Exception:  # not a TextIOWrapper (or no stream at all): leave it as it is
            pass


# --- Errors -----------------------------------------------------------------------------------


def make_error(
    message: str | None, error_type: str | None, trace: list[str] | None, request_id: str | None
) -> dict[str, Any]:
    """awslambdaric's error body; the key order is part of the wire format."""
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id if request_id is not None else "",
        "stackTrace": trace or [],
    }


def make_xray_fault(
    error_type: str, message: str, frames: list[tuple[str, int | None, str, str | None]]
) -> dict[str, Any]:
    """The ``Lambda-Runtime-Function-XRay-Error-Cause`` document."""
    stack = [{"label": name, "path": path, "line": line} for path, line, name, _ in frames]
    return {
        "working_directory": os.getcwd(),
        "exceptions": [{"message": message, "type": error_type, "stack": stack}],
        "paths": list(dict.fromkeys(path for path, _, _, _ in frames)),
    }


def describe_exception(
    exc_type: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
    request_id: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The error body and X-Ray cause for an exception, without this bootstrap's own frames."""
    import traceback

    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    for index, frame in enumerate(frames):
        if "/bootstrap.py" not in frame[0]:
            frames = frames[index:]
            break
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable %s object>" % exc_type.__name__
    error = make_error(message, exc_type.__name__, traceback.format_list(frames), request_id)
    return error, make_xray_fault(exc_type.__name__, message, frames)


# --- The Runtime API client -------------------------------------------------------------------


class _ProtocolError(Exception):
    """The Runtime API answered something that is not HTTP/1.1 as lambdad speaks it."""


class _Connection:
    """One keep-alive HTTP/1.1 connection, spoken by hand: the Runtime API's answers always
    carry ``Content-Length``, and ``http.client`` (its header parsing goes through the email
    package) costs more per invocation than everything else the bootstrap does."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.sock = _connect(host or "127.0.0.1", int(port))
        self.sock.settimeout(None)
        try:  # noqa: SIM105 - contextlib would be one more import at cold start
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.reader = self.sock.makefile("rb")
        self.host = address

    def exchange(
        self, method: str, path: str, body: bytes | None, headers: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes, bool]:
        """Send one request; returns status, headers (lower-case names), body, keep-alive."""
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: " + self.host]
        head = "\r\n".join(lines).encode("latin-1")
        extra = b"".join(
            b"\r\n" + name.encode("latin-1") + b": " + _header_bytes(value)
            for name, value in headers.items()
        )
        if body is not None:
            extra += b"\r\nContent-Length: " + str(len(body)).encode()
        self.sock.sendall(head + extra + b"\r\n\r\n" + (body or b""))
        status_line = self.reader.readline(65537)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise _ProtocolError("bad status line %r" % status_line[:100])
        status = int(parts[1])
        answer: dict[str, str] = {}
        while True:
            line = self.reader.readline(1 << 21)
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.partition(b":")
            if not sep:
                raise _ProtocolError("bad header line %r" % line[:100])
            answer[name.strip().lower().decode("latin-1")] = _header_text(value.strip())
        length = answer.get("content-length")
        if length is None:
            raise _ProtocolError("answer without Content-Length")
        payload = self.reader.read(int(length))
        if len(payload) != int(length):
            raise _ProtocolError("connection closed mid-answer")
        return status, answer, payload, answer.get("connection", "").lower() != "close"

    def close(self) -> None:
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass


def _connect(host: str, port: int) -> socket.socket:
    """A connection to the Runtime API within one second.

    An IPv4 literal (what lambdad always gives) is connected to directly: name resolution
    (``getaddrinfo``) would import the ``idna`` codec on first use, milliseconds of a forked
    runtime's cold start.
    """
    try:
        socket.inet_aton(host)
    except OSError:
        return socket.create_connection((host, port), timeout=1.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _header_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


def _header_text(value: bytes) -> str:
    """A header value as text: UTF-8 where it is, else Latin-1 (as HTTP defines it)."""
    try:
        return value.decode("utf-8")
    except UnicodeError:
        return value.decode("latin-1")


class Invocation:
    """One event as ``GET /next`` delivered it."""

    __slots__ = (
        "body",
        "client_context",
        "cognito_identity",
        "content_type",
        "deadline_ms",
        "function_arn",
        "request_id",
        "tenant_id",
        "trace_id",
    )

    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        request_id = headers.get("lambda-runtime-aws-request-id")
        if not request_id:
            raise RuntimeApiError("GET /next answered without Lambda-Runtime-Aws-Request-Id")
        self.request_id = request_id
        try:
            self.deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)
        except ValueError:
            self.deadline_ms = 0
        self.function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self.trace_id = headers.get("lambda-runtime-trace-id")
        self.client_context = headers.get("lambda-runtime-client-context")
        self.cognito_identity = headers.get("lambda-runtime-cognito-identity")
        self.tenant_id = headers.get("lambda-runtime-aws-tenant-id")
        self.content_type = headers.get("content-type")
        self.body = body


class RuntimeClient:
    """One keep-alive HTTP/1.1 connection to the Runtime API, re-opened once when it breaks."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._conn: _Connection | None = None

    def next_invocation(self) -> Invocation:
        status, headers, body = self._exchange("GET", _API + "/invocation/next", None, {})
        if status != 200:
            raise RuntimeApiError("GET /next answered %d: %r" % (status, body[:200]))
        return Invocation(headers, body)

    def post_response(self, request_id: str, body: bytes, content_type: str) -> None:
        path = "%s/invocation/%s/response" % (_API, request_id)
        self._post(path, body, {"Content-Type": content_type})

    def post_error(self, request_id: str, body: bytes, xray_cause: bytes) -> None:
        path = "%s/invocation/%s/error" % (_API, request_id)
        headers: dict[str, Any] = {"Content-Type": "application/json"}
        if len(xray_cause) < _MAX_XRAY_CAUSE:
            with_cause = dict(headers)
            with_cause["Lambda-Runtime-Function-XRay-Error-Cause"] = xray_cause
            # A deep stack makes a cause of tens of KiB, more than many servers take in a header:
            # the error matters more than its X-Ray cause, so a rejected one is sent without it.
            if self._post(path, body, with_cause, retry_on=(400, 431)):
                return
        self._post(path, body, headers)

    def post_init_error(self, body: bytes, error_type: str) -> None:
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Function-Error-Type": error_type.encode("utf-8"),
        }
        self._post(_API + "/init/error", body, headers)

    def _post(
        self, path: str, body: bytes, headers: dict[str, Any], retry_on: tuple[int, ...] = ()
    ) -> bool:
        """POST and check the answer; False when it is one of ``retry_on``."""
        status, _, answer = self._exchange("POST", path, body, headers)
        if status >= 500:
            raise RuntimeApiError("POST %s answered %d: %r" % (path, status, answer[:200]))
        if status in retry_on:
            return False
        if status != 202:  # e.g. 413 for a response that is too large: lambdad has the outcome
            sys.stderr.write("lambdad runtime: POST %s answered %d: %r\n" % (path, status, answer))
        return True

    def _exchange(
        self, method: str, path: str, body: bytes | None, headers: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = _Connection(self._address)
                status, answer, payload, keep_alive = self._conn.exchange(
                    method, path, body, headers
                )
            except (OSError, ValueError, _ProtocolError) as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise RuntimeApiError("%s %s failed: %r" % (method, path, exc)) from exc
                continue
            if not keep_alive:
                self._conn.close()
                self._conn = None
            return status, answer, payload
        raise AssertionError("unreachable")


# --- The loop ---------------------------------------------------------------------------------


class Runtime:
    """Serves events to one handler until the Runtime API goes away."""

    def __init__(
        self,
        client: RuntimeClient,
        handler: Callable[..., Any],
        marshaller: Marshaller,
        json_logs: bool,
    ) -> None:
        self.client = client
        self.handler = handler
        self.marshaller = marshaller
        self.json_logs = json_logs

    def serve_forever(self) -> NoReturn:
        while True:
            invocation = self.client.next_invocation()
            _Current.request_id = invocation.request_id
            _Current.tenant_id = invocation.tenant_id
            if invocation.trace_id is not None:
                os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
            else:
                os.environ.pop("_X_AMZN_TRACE_ID", None)
            self.invoke(invocation)

    def invoke(self, invocation: Invocation) -> None:
        """Run the handler on one event and post its result or its error."""
        request_id = invocation.request_id
        try:
            context = _make_context(invocation)
            event = self.marshaller.unmarshal(invocation.body, invocation.content_type)
            result = self.handler(event, context)
            body, content_type = self.marshaller.marshal(result)
        except FaultError as fault:
            error = make_error(fault.msg, fault.error_type, fault.trace, request_id)
            xray = make_xray_fault("LambdaValidationError", fault.msg, [])
        except Exception:
            error, xray = describe_exception(*sys.exc_info(), request_id=request_id)
        else:
            _flush_streams()
            self.client.post_response(request_id, body, content_type)
            return
        log_error(error, self.json_logs, self.marshaller)
        _flush_streams()
        self.client.post_error(request_id, self._encode(error), self._encode(xray))

    def _encode(self, document: dict[str, Any]) -> bytes:
        return self.marshaller.to_json(document).encode("utf-8", "replace")


def _make_context(invocation: Invocation) -> LambdaContext:
    client_context = None
    if invocation.client_context:
        client_context = _parse_json_header(invocation.client_context, "Client Context")
    cognito_identity = None
    if invocation.cognito_identity:
        cognito_identity = _parse_json_header(invocation.cognito_identity, "Cognito Identity")
    return LambdaContext(
        invocation.request_id,
        client_context,
        cognito_identity,
        invocation.deadline_ms,
        invocation.function_arn,
        invocation.tenant_id,
    )


def _fail_init(client: RuntimeClient, marshaller: Marshaller, json_logs: bool) -> NoReturn:
    """Log the init error, report it to ``/runtime/init/error`` and exit 1.

    Called inside the ``except`` block, so tools that hook the report still find the exception
    in ``sys.exc_info()``.
    """
    exc_type, exc, tb = sys.exc_info()
    if isinstance(exc, FaultError):
        error = make_error(exc.msg, exc.error_type, exc.trace, None)
    else:
        error, _ = describe_exception(exc_type, exc, tb, None)
    logging.warning(_UNHANDLED_WARNING)
    log_error(error, json_logs, marshaller)
    _flush_streams()
    try:
        body = marshaller.to_json(error).encode("utf-8", "replace")
        client.post_init_error(body, error["errorType"])
    except RuntimeApiError as api_error:
        sys.stderr.write("lambdad runtime: %s\n" % api_error)
    sys.exit(1)


def _unicode_responses(execution_env: str | None) -> bool:
    """awslambdaric stops escaping non-ASCII in results from ``AWS_Lambda_python3.12`` on."""
    prefix = "AWS_Lambda_python3."
    if not execution_env or not execution_env.startswith(prefix):
        return False
    minor = execution_env[len(prefix) :]
    return minor.isdigit() and int(minor) >= 12


def _log_level(value: str | None) -> str:
    """``AWS_LAMBDA_LOG_LEVEL`` as a level name (TRACE is DEBUG), as awslambdaric reads it."""
    return {None: "", "TRACE": "DEBUG"}.get(value, value).upper()


_SIBLINGS: dict[str, Any] = {}


def _sibling(name: str) -> Any:
    """A module beside this file, loaded by its path once (this directory is not on sys.path).

    A zygote loads them before any cell exists (``preload``); a process started inside a cell
    finds them in ``LAMBDA_RUNTIME_DIR``, where the bootstrap is too.
    """
    if name in _SIBLINGS:
        return _SIBLINGS[name]
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    runtime_dir = os.environ.get("LAMBDA_RUNTIME_DIR")
    if not os.path.isfile(path) and runtime_dir:
        path = os.path.join(runtime_dir, "python", name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s" % path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _SIBLINGS[name] = module
    return module


def preload() -> None:
    """Load the modules a runtime forked from a zygote needs, while their files are at hand."""
    _sibling("snapshot_restore_py")
    _sibling("snapstart")


def _fail_template(fd: int, marshaller: Marshaller, json_logs: bool) -> NoReturn:
    """A SnapStart template's init failed: log it, tell lambdad, exit 1."""
    exc_type, exc, tb = sys.exc_info()
    if isinstance(exc, FaultError):
        error = make_error(exc.msg, exc.error_type, exc.trace, None)
    else:
        error, _ = describe_exception(exc_type, exc, tb, None)
    logging.warning(_UNHANDLED_WARNING)
    log_error(error, json_logs, marshaller)
    _flush_streams()
    body = marshaller.to_json(error).encode("utf-8", "replace")
    _sibling("snapstart").report_init_error(fd, error, body)
    sys.exit(1)


def main() -> NoReturn:
    """Initialise the function, then serve events until the Runtime API goes away.

    With ``_LAMBDAD_TEMPLATE_FD`` set this process is a SnapStart template: after init it
    only forks environments (``snapstart.py``), and each restored child serves events.
    """
    environ = os.environ
    template_fd = environ.pop("_LAMBDAD_TEMPLATE_FD", None)
    _line_buffer_streams()
    prepare_sys_path(environ)
    json_logs = (environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON"
    marshaller = Marshaller(ensure_ascii=not _unicode_responses(environ.get("AWS_EXECUTION_ENV")))
    setup_logging(json_logs, _log_level(environ.get("AWS_LAMBDA_LOG_LEVEL")))
    hooks = sys.modules.setdefault("snapshot_restore_py", _sibling("snapshot_restore_py"))
    client = RuntimeClient(environ.get("AWS_LAMBDA_RUNTIME_API") or "127.0.0.1:9001")
    try:
        handler = load_handler(environ.get("_HANDLER", ""))
        if template_fd is not None:
            template = _sibling("snapstart")
            template.run_before_snapshot(hooks)
    except Exception:
        if template_fd is not None:
            _fail_template(int(template_fd), marshaller, json_logs)
        _fail_init(client, marshaller, json_logs)
    if template_fd is not None:
        _flush_streams()
        template.serve(int(template_fd), hooks)  # returns in a restored child only
        client = RuntimeClient(environ.get("AWS_LAMBDA_RUNTIME_API") or "127.0.0.1:9001")
    runtime = Runtime(client, handler, marshaller, json_logs)
    try:
        runtime.serve_forever()
    except RuntimeApiError as exc:
        _flush_streams()
        sys.stderr.write("lambdad runtime: %s\n" % exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
