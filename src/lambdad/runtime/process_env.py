"""The environment variables of a runtime process, as Lambda sets them."""

from __future__ import annotations

from collections.abc import Mapping

from lambdad.runtime.sandbox.base import Layout, Reach
from lambdad.runtime.spec import FunctionSpec

#: The process variables a function's own configuration may override.
OVERRIDABLE = ("PATH", "LD_LIBRARY_PATH", "LANG", "TZ", "AWS_XRAY_DAEMON_ADDRESS")
#: Where the X-Ray SDKs send segments (UDP) when lambdad runs no segment listener: Lambda's
#: daemon listens on port 2000 of a link-local address; this is the sandbox's own loopback,
#: where nothing listens. With a listener (docs/tracing.md) the variables name it instead.
XRAY_DAEMON_HOST = "127.0.0.1"
XRAY_DAEMON_PORT = "2000"


def process_environment(
    cfg: FunctionSpec,
    layout: Layout,
    host_path: str,
    region: str,
    port: int,
    stream: str,
    extra: dict[str, str],
    reach: Reach | None = None,
    xray: tuple[str, int] | None = None,
) -> dict[str, str]:
    """The runtime process's environment (wire spec section 3); the function's own variables
    may override only the ones Lambda lets them."""
    task = layout.task_root
    reach = reach or Reach()
    xray_host, xray_port = (xray[0], str(xray[1])) if xray else (XRAY_DAEMON_HOST, XRAY_DAEMON_PORT)
    env = {
        "PATH": f"{host_path}:{layout.opt}/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LD_LIBRARY_PATH": f"/var/lang/lib:/lib64:/usr/lib64:{task}:{task}/lib:{layout.opt}/lib",
        **cfg.environment,
        "_HANDLER": cfg.handler or "",
        "AWS_LAMBDA_RUNTIME_API": f"{reach.api_host}:{port}",
        "LAMBDA_TASK_ROOT": task,
        "LAMBDA_RUNTIME_DIR": layout.runtime_dir,
        "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
        "AWS_LAMBDA_FUNCTION_VERSION": cfg.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_size),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(cfg.timeout),
        "AWS_LAMBDA_LOG_GROUP_NAME": cfg.log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "AKIALAMBDADLOCAL0000",
        "AWS_SECRET_ACCESS_KEY": "lambdad-local-secret-key",
        "AWS_SESSION_TOKEN": "lambdad-local-session-token",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": f"{xray_host}:{xray_port}",
        "_AWS_XRAY_DAEMON_ADDRESS": xray_host,
        "_AWS_XRAY_DAEMON_PORT": xray_port,
        # What the managed runtimes' bootstrap shell leaves behind: it runs in the task root
        # and execs the runtime (bash lowers SHLVL on exec: 0), under the C.UTF-8 locale.
        "PWD": task,
        "SHLVL": "0",
        "LC_CTYPE": "C.UTF-8",
        "AWS_LAMBDA_LOG_FORMAT": cfg.log_format,
        "TMPDIR": layout.tmp,
        "HOME": layout.tmp,
    }
    if layout.opt != "/opt":
        env["_LAMBDAD_OPT"] = layout.opt
    if cfg.log_format == "JSON" and cfg.log_level:
        env["AWS_LAMBDA_LOG_LEVEL"] = cfg.log_level
    env.update(extra)
    for key in cfg.environment:
        if key in OVERRIDABLE:
            env[key] = cfg.environment[key]
    if reach.api_url and not _names_endpoint(cfg.environment):
        # An AWS SDK inside the function reaches lambdad's Lambda API (boto3 reads it).
        env["AWS_ENDPOINT_URL_LAMBDA"] = reach.api_url
    return _reachable_endpoints(env, reach)


def _names_endpoint(variables: Mapping[str, str]) -> bool:
    """The function's own variables name the Lambda endpoint (they win)."""
    return "AWS_ENDPOINT_URL_LAMBDA" in variables or "AWS_ENDPOINT_URL" in variables


def _reachable_endpoints(env: dict[str, str], reach: Reach) -> dict[str, str]:
    """``AWS_ENDPOINT_URL*`` naming lambdad's loopback address, as the cell reaches lambdad."""
    if not reach.endpoints:
        return env
    for key, value in env.items():
        if key.startswith("AWS_ENDPOINT_URL"):
            scheme, sep, rest = value.partition("://")
            netloc, slash, path = rest.partition("/")
            if sep and netloc in reach.endpoints:
                env[key] = f"{scheme}://{reach.endpoints[netloc]}{slash}{path}"
    return env


#: Not set in SnapStart environments (AWS: they are not available to SnapStart functions).
_NOT_IN_SNAP_START = ("AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME")


def snap_start_environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a SnapStart template or an environment restored from one."""
    snap = {k: v for k, v in env.items() if k not in _NOT_IN_SNAP_START}
    snap["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
    return snap
