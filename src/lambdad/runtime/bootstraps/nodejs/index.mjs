/**
 * lambdad's runtime client for the managed Node.js runtimes (nodejs18.x, nodejs20.x, nodejs22.x).
 *
 * Started as `node index.mjs` with no arguments; everything comes from the environment
 * (`_HANDLER`, `LAMBDA_TASK_ROOT`, `AWS_LAMBDA_RUNTIME_API`, ...). It behaves like the
 * managed runtime built from aws-lambda-nodejs-runtime-interface-client (the "RIC"):
 *
 * - handler strings, module lookup and the `Runtime.*` init errors of `UserFunction.load`;
 * - the context object, async / callback / legacy `context.succeed|fail|done` handlers and
 *   `callbackWaitsForEmptyEventLoop` (answered from `beforeExit`, as the RIC does);
 * - console patching in the `Text` and `JSON` log formats with `AWS_LAMBDA_LOG_LEVEL`;
 * - `awslambda.streamifyResponse` / `awslambda.HttpResponseStream` response streaming;
 * - error bodies `{"errorType","errorMessage","trace"}`, `Uncaught Exception` (exit 129) and
 *   `Unhandled Promise Rejection` (exit 128).
 *
 * Logs are written synchronously to fd 1 (or framed to `_LAMBDA_TELEMETRY_LOG_FD`), so every
 * line logged during an invoke is in the pipe before its /response or /error is posted.
 * Node built-ins only, and only the cheap ones: cold start is what this file is judged on.
 */

import fs from 'node:fs';
import http from 'node:http';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import util from 'node:util';

const API_PREFIX = '/2018-06-01/runtime';
const SELF = fileURLToPath(import.meta.url);
const REQUEST_ID = Symbol.for('aws.lambda.runtime.requestId');
const TENANT_ID = Symbol.for('aws.lambda.runtime.tenantId');
const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const STREAM_RESPONSE = 'response';
const XRAY_CAUSE_LIMIT = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Errors (RIC Errors.js): the class name is the JSON-log `errorType`, `Runtime.<name>` the wire's.

class ImportModuleError extends Error {}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {}
class MalformedStreamingHandler extends Error {}
class InvalidStreamingOperation extends Error {}
class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
class NodeJsExit extends Error {
  constructor() {
    super(
      'The Lambda runtime client detected an unexpected Node.js exit code. This is most ' +
        'commonly caused by a Promise that was never settled. For more information, see ' +
        'https://nodejs.org/docs/latest/api/process.html#exit-codes',
    );
  }
}
for (const cls of [
  ImportModuleError,
  HandlerNotFound,
  MalformedHandlerName,
  UserCodeSyntaxError,
  MalformedStreamingHandler,
  InvalidStreamingOperation,
  UnhandledPromiseRejection,
  NodeJsExit,
]) {
  cls.prototype.name = `Runtime.${cls.name}`;
}

function looksLikeError(obj) {
  return (
    !!obj &&
    typeof obj.name === 'string' &&
    typeof obj.message === 'string' &&
    typeof obj.stack === 'string' &&
    obj.name !== '' &&
    obj.message !== '' &&
    obj.stack !== ''
  );
}

function intoError(err) {
  return err instanceof Error ? err : new Error(err);
}

/** The body posted to /error and /init/error. */
function toRapidResponse(error) {
  try {
    if (util.types.isNativeError(error) || looksLikeError(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: error.stack.split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: error.toString(), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one ' +
        'or more of its message, name, and stack',
    };
  }
}

function withEnumerableProperties(value) {
  if (!(value instanceof Error)) return value;
  const ret = Object.assign(
    { errorType: value.name, errorMessage: value.message, code: value.code },
    value,
  );
  if (typeof value.stack === 'string') ret.stack = value.stack.split('\n');
  return ret;
}

/** The Text-format rendering of an error: a tab, then JSON (RIC `toFormatted`). */
function toFormatted(error) {
  try {
    return '\t' + JSON.stringify(error, (_k, v) => withEnumerableProperties(v));
  } catch {
    return '\t' + JSON.stringify(toRapidResponse(error));
  }
}

/** The X-Ray cause header the native RIC client sends with an invocation error. */
function xrayCause(err) {
  try {
    const stack = [];
    if (err && typeof err.stack === 'string') {
      for (const raw of err.stack.split('\n').slice(1)) {
        let line = raw.trim().replace(/\(|\)/g, '');
        line = line.substring(line.indexOf(' ') + 1);
        const cut = line.lastIndexOf(' ');
        const label = cut >= 0 ? line.slice(0, cut) : null;
        const where = (label ? line.slice(cut + 1) : line).split(':');
        stack.push({ path: where[0], line: parseInt(where[1]), label: label || 'anonymous' });
      }
    }
    const cause = JSON.stringify({
      working_directory: process.cwd(),
      exceptions: [{ type: err?.name, message: err?.message, stack }],
      paths: [...new Set(stack.map((e) => e.path))],
    });
    // Header values must be Latin-1 without controls: escape the rest, the JSON stays valid.
    const ascii = cause.replace(
      /[^\x20-\x7e]/g,
      (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
    );
    return ascii.length < XRAY_CAUSE_LIMIT ? ascii : '';
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------
// Logging (RIC LogPatch.js)

const LEVELS = Object.freeze({
  TRACE: { name: 'TRACE', priority: 1, tlvMask: 0b00100 },
  DEBUG: { name: 'DEBUG', priority: 2, tlvMask: 0b01000 },
  INFO: { name: 'INFO', priority: 3, tlvMask: 0b01100 },
  WARN: { name: 'WARN', priority: 4, tlvMask: 0b10000 },
  ERROR: { name: 'ERROR', priority: 5, tlvMask: 0b10100 },
  FATAL: { name: 'FATAL', priority: 6, tlvMask: 0b11000 },
});

let sleepCell;
/** Write all of `data` to `fd` synchronously, riding out EAGAIN on a non-blocking pipe. */
function writeFully(fd, data) {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (err) {
      if (err.code !== 'EAGAIN') return; // EPIPE & co: the reader is gone, nothing to save
      sleepCell ??= new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(sleepCell, 0, 0, 1);
    }
  }
}

const jsonErrorReplacer = (_k, value) => {
  if (!(value instanceof Error)) return value;
  return Object.assign(
    {
      errorType: value?.constructor?.name ?? 'UnknownError',
      errorMessage: value.message,
      stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
    },
    value,
  );
};

function formatJsonMessage(timestamp, level, message, params) {
  const result = { timestamp, level: level.name, requestId: globalThis[REQUEST_ID] };
  const tenantId = globalThis[TENANT_ID];
  if (tenantId !== undefined && tenantId !== null) result.tenantId = tenantId;
  if (params.length === 0) {
    result.message = message;
    try {
      return JSON.stringify(result, jsonErrorReplacer);
    } catch {
      result.message = util.format(result.message);
      return JSON.stringify(result);
    }
  }
  result.message = util.format(message, ...params);
  for (const param of [message, ...params]) {
    if (param instanceof Error) {
      result.errorType = param?.constructor?.name ?? 'UnknownError';
      result.errorMessage = param.message;
      result.stackTrace = typeof param.stack === 'string' ? param.stack.split('\n') : [];
      break;
    }
  }
  return JSON.stringify(result);
}

function textLine(time, level, message, params) {
  return `${time}\t${globalThis[REQUEST_ID]}\t${level.name}\t${util.format(message, ...params)}`;
}

function makeSink(json) {
  const fdEnv = process.env._LAMBDA_TELEMETRY_LOG_FD;
  if (fdEnv === undefined || fdEnv === null) {
    // Newlines inside a message are kept as they are (one record may span several lines).
    return json
      ? (level, message, params) =>
          writeFully(1, formatJsonMessage(new Date().toISOString(), level, message, params) + '\n')
      : (level, message, params) =>
          writeFully(1, textLine(new Date().toISOString(), level, message, params) + '\n');
  }
  // Framed records: type(4) | length(4) | timestamp in microseconds(8) | message, big-endian.
  const fd = parseInt(fdEnv);
  delete process.env._LAMBDA_TELEMETRY_LOG_FD;
  const frameType = json ? 0xa55a0002 : 0xa55a0003;
  return (level, message, params) => {
    const date = new Date();
    const time = date.toISOString();
    const text = json
      ? formatJsonMessage(time, level, message, params)
      : textLine(time, level, message, params) + '\n';
    const body = Buffer.from(text, 'utf8');
    const frame = Buffer.allocUnsafe(16 + body.length);
    frame.writeUInt32BE((frameType | level.tlvMask) >>> 0, 0);
    frame.writeInt32BE(body.length, 4);
    frame.writeBigInt64BE(BigInt(date.valueOf()) * 1000n, 8);
    body.copy(frame, 16);
    writeFully(fd, frame);
  };
}

const logging = { json: false, sink: null, minimum: LEVELS.TRACE };

function log(level, message, params) {
  if (level.priority >= logging.minimum.priority) logging.sink(level, message, params);
}

/** The runtime's own error records: `<msg> \t{json}` in Text, the error object in JSON. */
function logError(msg, err) {
  if (logging.json) log(LEVELS.ERROR, intoError(err), []);
  else log(LEVELS.ERROR, msg, [toFormatted(intoError(err))]);
}

function patchConsole() {
  const format = process.env.AWS_LAMBDA_LOG_FORMAT?.toUpperCase() === 'JSON' ? 'JSON' : 'TEXT';
  logging.json = format === 'JSON';
  logging.sink = makeSink(logging.json);
  logging.minimum = LEVELS[process.env.AWS_LAMBDA_LOG_LEVEL?.toUpperCase()] ?? LEVELS.TRACE;
  const nop = () => {};
  const bind = (level) =>
    level.priority >= logging.minimum.priority
      ? (message, ...params) => logging.sink(level, message, params)
      : nop;
  console.trace = bind(LEVELS.TRACE);
  console.debug = bind(LEVELS.DEBUG);
  console.info = bind(LEVELS.INFO);
  console.log = console.info;
  console.warn = bind(LEVELS.WARN);
  console.error = bind(LEVELS.ERROR);
  console.fatal = (message, ...params) => logging.sink(LEVELS.FATAL, message, params);
}

// ---------------------------------------------------------------------------------------------
// Runtime API client

class RuntimeClient {
  constructor(hostPort) {
    const cut = hostPort.lastIndexOf(':');
    this.hostname = cut > 0 ? hostPort.slice(0, cut).replace(/^\[|\]$/g, '') : hostPort;
    this.port = cut > 0 ? parseInt(hostPort.slice(cut + 1), 10) : 80;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  /** One request; a reused keep-alive socket the server had closed is retried once. */
  request(method, urlPath, headers, body, retried = false) {
    return new Promise((resolve, reject) => {
      const { hostname, port, agent } = this;
      const req = http.request(
        { hostname, port, path: urlPath, method, headers, agent },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () =>
            resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        },
      );
      req.on('error', (err) => {
        if (req.reusedSocket && !retried && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          this.request(method, urlPath, headers, body, true).then(resolve, reject);
        } else {
          reject(err);
        }
      });
      req.end(body);
    });
  }

  async nextInvocation() {
    const res = await this.request('GET', `${API_PREFIX}/invocation/next`, {});
    if (res.status !== 200) {
      throw new Error(`Failed to get next invocation, HTTP ${res.status}: ${res.body}`);
    }
    return { bodyJson: res.body.toString('utf8'), headers: res.headers };
  }

  /** POST JSON; failures are swallowed (as the native client does): /next will tell. */
  post(urlPath, bodyString, headers = {}) {
    const body = Buffer.from(bodyString, 'utf8');
    const all = { 'Content-Type': 'application/json', 'Content-Length': body.length, ...headers };
    return this.request('POST', urlPath, all, body).then(
      () => undefined,
      () => undefined,
    );
  }

  postInvocationResponse(id, bodyString) {
    return this.post(`${API_PREFIX}/invocation/${encodeURIComponent(id)}/response`, bodyString);
  }

  postInvocationError(id, error) {
    const body = serialize(toRapidResponse(error));
    const cause = xrayCause(error);
    const headers = cause ? { 'Lambda-Runtime-Function-XRay-Error-Cause': cause } : {};
    return this.post(`${API_PREFIX}/invocation/${encodeURIComponent(id)}/error`, body, headers);
  }

  postInitError(error) {
    const response = toRapidResponse(error);
    return this.post(`${API_PREFIX}/init/error`, serialize(response), {
      'Lambda-Runtime-Function-Error-Type': headerSafe(response.errorType),
    });
  }
}

/** A header value Node will send: printable ASCII only. */
function headerSafe(value) {
  return String(value).replace(/[^\x20-\x7e]/g, '?');
}

/** JSON for the wire; `undefined` becomes `null`. Throws the RIC's message on failure. */
function serialize(value) {
  try {
    return JSON.stringify(value === undefined ? null : value);
  } catch {
    throw new Error('Unable to stringify response body');
  }
}

// ---------------------------------------------------------------------------------------------
// Loading the handler (RIC UserFunction.js)

const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;
const runtimeRequire = createRequire(SELF);

function splitHandler(fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root ` +
        'directories in handler names.',
    );
  }
  const handlerString = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(handlerString));
  const match = handlerString.match(FUNCTION_EXPR);
  if (!match || match.length !== 3) throw new MalformedHandlerName('Bad handler');
  return { moduleRoot, moduleName: match[1], handlerPath: match[2] };
}

function packageTypeIsModule(folder) {
  if (folder.endsWith('/node_modules')) return false;
  const pj = path.join(folder, 'package.json');
  if (fs.existsSync(pj)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(pj));
      if (pkg) return pkg.type === 'module';
    } catch (e) {
      console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, e);
      return false;
    }
  }
  if (folder === '/') return false;
  return packageTypeIsModule(path.resolve(folder, '..'));
}

function requireIfExists(file) {
  return fs.existsSync(file) ? runtimeRequire(file) : undefined;
}

async function importIfExists(file) {
  return fs.existsSync(file) ? await import(pathToFileURL(file).href) : undefined;
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);
  const extensionless = requireIfExists(base);
  if (extensionless) return extensionless;
  const isModule = packageTypeIsModule(path.dirname(base));
  if (!isModule) {
    const cjs = requireIfExists(base + '.js');
    if (cjs) return cjs;
  }
  const loaded =
    (isModule && (await importIfExists(base + '.js'))) ||
    (await importIfExists(base + '.mjs')) ||
    requireIfExists(base + '.cjs');
  if (loaded) return loaded;
  // Node-style lookup (node_modules, NODE_PATH) relative to the task root and the handler dir.
  return runtimeRequire(runtimeRequire.resolve(moduleName, { paths: [appRoot, moduleRoot] }));
}

function installAwsLambdaGlobal() {
  const off = process.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA;
  if (off === '1' || off === 'true') return;
  globalThis.awslambda = {
    streamifyResponse(handler, options) {
      handler[HANDLER_STREAMING] = STREAM_RESPONSE;
      if (typeof options?.highWaterMark === 'number') {
        handler[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark);
      }
      return handler;
    },
    HttpResponseStream,
  };
}

async function loadHandler(appRoot, fullHandler) {
  const { moduleRoot, moduleName, handlerPath } = splitHandler(fullHandler);
  installAwsLambdaGlobal();
  let userModule;
  try {
    userModule = await loadModule(appRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e?.code === 'MODULE_NOT_FOUND') throw new ImportModuleError(e);
    throw e;
  }
  const handler = handlerPath.split('.').reduce((obj, key) => obj && obj[key], userModule);
  if (!handler) throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof handler !== 'function') throw new HandlerNotFound(`${fullHandler} is not a function`);
  return handler;
}

function handlerMetadata(handler) {
  const mark = handler[HANDLER_STREAMING];
  let streaming = false;
  if (mark !== undefined && mark !== null && mark !== false) {
    if (mark !== STREAM_RESPONSE) {
      throw new MalformedStreamingHandler('Only response streaming is supported.');
    }
    streaming = true;
  }
  const hwm = parseInt(handler[HANDLER_HIGHWATERMARK]);
  let isAsync = false;
  try {
    isAsync = handler.constructor?.name === 'AsyncFunction';
  } catch {
    isAsync = false;
  }
  const highWaterMark = isNaN(hwm) ? undefined : hwm;
  return { streaming, highWaterMark, isAsync, argsNum: handler.length };
}

function warnOnCallbackHandler(meta) {
  if (
    process.env.AWS_LAMBDA_NODEJS_DISABLE_CALLBACK_WARNING === undefined &&
    meta.argsNum === 3 &&
    !meta.isAsync &&
    !meta.streaming
  ) {
    console.warn(
      'AWS Lambda plans to remove support for callback-based function handlers starting with ' +
        'Node.js 24. You will need to update this function to use an async handler to use ' +
        'Node.js 24 or later. For more information and to provide feedback on this change, see ' +
        'https://github.com/aws/aws-lambda-nodejs-runtime-interface-client/issues/137. ' +
        'To disable this warning, set the AWS_LAMBDA_NODEJS_DISABLE_CALLBACK_WARNING ' +
        'environment variable.',
    );
  }
}

/** The managed bootstrap's NODE_PATH when the launcher gave none (layers, then the task). */
function defaultNodePath(taskRoot) {
  if (process.env.NODE_PATH) return;
  const major =
    /nodejs(\d+)/.exec(process.env.AWS_EXECUTION_ENV || '')?.[1] ??
    process.versions.node.split('.')[0];
  const runtimeDir = process.env.LAMBDA_RUNTIME_DIR || path.dirname(SELF);
  process.env.NODE_PATH = [
    `/opt/nodejs/node${major}/node_modules`,
    '/opt/nodejs/node_modules',
    `${runtimeDir}/node_modules`,
    runtimeDir,
    taskRoot,
  ].join(':');
  Module._initPaths?.();
}

// ---------------------------------------------------------------------------------------------
// The invoke context (RIC InvokeContext.js, CallbackContext.js)

function parseJsonHeader(value, name) {
  if (value === undefined || value === '') return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

/** Fill `ctx` (which already holds the callback part) with the environment and the headers. */
function attachInvokeData(ctx, headers) {
  const trace = headers['lambda-runtime-trace-id'];
  if (trace) process.env._X_AMZN_TRACE_ID = trace;
  else delete process.env._X_AMZN_TRACE_ID;
  const deadline = Number(headers['lambda-runtime-deadline-ms']);
  return Object.assign(
    ctx,
    {
      functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    },
    {
      clientContext: parseJsonHeader(headers['lambda-runtime-client-context'], 'ClientContext'),
      identity: parseJsonHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
      invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
      awsRequestId: headers['lambda-runtime-aws-request-id'],
      tenantId: headers['lambda-runtime-aws-tenant-id'],
      getRemainingTimeInMillis() {
        return deadline - Date.now();
      },
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Response streaming (RIC ResponseStream.js, HttpResponseStream.js, StreamingContext.js)

class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType('application/vnd.awslambda.http-integration-response');
    const metadataPrelude = JSON.stringify(prelude);
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadataPrelude);
      write(new Uint8Array(8));
    };
    return underlyingStream;
  }
}

/** A chunked POST to /response whose errors travel in trailers; returns the stream and its end. */
function createResponseStream(client, id, highWaterMark) {
  let started = false;
  let settle;
  const done = new Promise((resolve, reject) => (settle = { resolve, reject }));
  const req = http.request({
    hostname: client.hostname,
    port: client.port,
    path: `${API_PREFIX}/invocation/${encodeURIComponent(id)}/response`,
    method: 'POST',
    agent: client.agent,
    highWaterMark,
    headers: {
      'Lambda-Runtime-Function-Response-Mode': 'streaming',
      Trailer: 'Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body',
      'Content-Type': 'application/octet-stream',
    },
  });
  req.on('response', (res) => {
    res.on('data', () => {});
    res.on('aborted', (err) => settle.reject(err));
    res.on('end', () => settle.resolve());
  });
  req.on('error', (err) => settle.reject(err));
  const origWrite = req.write.bind(req);
  const origEnd = req.end.bind(req);
  const beforeFirst = () => {
    if (!started && typeof req._onBeforeFirstWrite === 'function') {
      req._onBeforeFirstWrite((chunk) => origWrite(chunk));
    }
    started = true;
  };
  req.setContentType = (contentType) => {
    if (started) throw new InvalidStreamingOperation('Cannot set content-type, too late.');
    req.setHeader('Content-Type', contentType);
  };
  req.write = (chunk, encoding, callback) => {
    if (typeof chunk !== 'string' && !Buffer.isBuffer(chunk) && chunk?.constructor !== Uint8Array) {
      chunk = JSON.stringify(chunk);
    }
    beforeFirst();
    return origWrite(chunk, encoding, callback);
  };
  req.end = (chunk, encoding, callback) => {
    if (typeof chunk === 'function') return req.end(undefined, undefined, chunk);
    if (typeof encoding === 'function') return req.end(chunk, undefined, encoding);
    if (chunk !== undefined && chunk !== null) req.write(chunk, encoding);
    beforeFirst();
    return origEnd(callback);
  };
  const fail = (err, callback) => {
    const error = toRapidResponse(err);
    started = true;
    req.addTrailers({
      'Lambda-Runtime-Function-Error-Type': headerSafe(error.errorType),
      'Lambda-Runtime-Function-Error-Body': Buffer.from(JSON.stringify(error)).toString('base64'),
    });
    origEnd(callback);
  };
  return { stream: req, done, fail };
}

// ---------------------------------------------------------------------------------------------
// The invoke loop (RIC Runtime.js)

let beforeExitListener = () => {};
const errorCallbacks = {};
let fatalInProgress = false;

/** Report a process-level failure once (to /init/error or the current invoke), then exit. */
function fatal(kind, error) {
  if (fatalInProgress) return;
  fatalInProgress = true;
  beforeExitListener = () => {};
  errorCallbacks[kind](error);
}

function isPromise(obj) {
  return !!obj && typeof obj.then === 'function';
}

class Runtime {
  constructor(client, handler, meta) {
    this.client = client;
    this.handler = handler;
    this.meta = meta;
  }

  scheduleIteration() {
    setImmediate(() => {
      if (fatalInProgress) return; // exiting once the failure is posted
      const once = this.meta.streaming ? this.handleOnceStreaming() : this.handleOnce();
      once.catch((err) => {
        console.log(`Unexpected Top Level Error: ${err.toString()}`);
        fatal('uncaughtException', err);
      });
    });
  }

  async next() {
    const { bodyJson, headers } = await this.client.nextInvocation();
    const id = headers['lambda-runtime-aws-request-id'];
    if (!id) throw new Error('invocation id is missing or invalid');
    globalThis[REQUEST_ID] = id;
    globalThis[TENANT_ID] = headers['lambda-runtime-aws-tenant-id'];
    this.setErrorCallbacks(id);
    return { id, bodyJson, headers };
  }

  async handleOnce() {
    const { id, bodyJson, headers } = await this.next();
    const { callback, context, markCompleted } = this.callbackContext(id);
    try {
      this.setDefaultExitListener(id, markCompleted);
      const event = JSON.parse(bodyJson);
      const result = this.handler(event, attachInvokeData(context, headers), callback);
      if (isPromise(result)) {
        result.then(context.succeed, context.fail).catch(context.fail);
      }
    } catch (err) {
      callback(err);
    }
  }

  /** The node-style callback and the context's succeed/fail/done; only the first call counts. */
  callbackContext(id) {
    const scheduleNext = () => this.scheduleIteration();
    let waitForEmptyEventLoop = true;
    let completed = false;
    let finished = false;

    const postError = (err) => {
      logError('Invoke Error', err);
      this.client.postInvocationError(id, err).then(scheduleNext);
    };
    const complete = (result) => {
      if (completed) {
        console.error(
          'Invocation has already been reported as done. ' +
            'Cannot call complete more than once per invocation.',
        );
        return;
      }
      completed = true;
      let body;
      try {
        body = serialize(result);
      } catch (err) {
        postError(err);
        return;
      }
      this.client.postInvocationResponse(id, body).then(scheduleNext);
    };
    const callback = (err, result) => {
      beforeExitListener = () => {};
      if (err !== undefined && err !== null) {
        postError(err);
      } else if (!waitForEmptyEventLoop) {
        complete(result);
      } else {
        beforeExitListener = () => {
          beforeExitListener = () => {};
          setImmediate(() => complete(result));
        };
      }
    };
    const done = (err, result) => {
      beforeExitListener = () => {};
      if (err !== undefined && err !== null) postError(err);
      else complete(result);
    };
    const once =
      (fn) =>
      (...args) => {
        if (finished) return;
        fn(...args);
        finished = true;
      };
    const context = {
      get callbackWaitsForEmptyEventLoop() {
        return waitForEmptyEventLoop;
      },
      set callbackWaitsForEmptyEventLoop(value) {
        waitForEmptyEventLoop = value;
      },
      succeed: once((result) => done(null, result)),
      fail: once((err) => (err === undefined || err === null ? done('handled') : done(err, null))),
      done: once(done),
    };
    return { callback: once(callback), context, markCompleted: () => (completed = true) };
  }

  /** If the loop drains and nothing answered: null for sync handlers, NodeJsExit for async. */
  setDefaultExitListener(id, markCompleted) {
    beforeExitListener = () => {
      beforeExitListener = () => {};
      markCompleted();
      if (this.meta.isAsync) {
        const error = new NodeJsExit();
        logError('Invoke Error', error);
        this.client.postInvocationError(id, error).then(() => this.scheduleIteration());
      } else {
        this.client.postInvocationResponse(id, 'null').then(() => this.scheduleIteration());
      }
    };
  }

  setErrorCallbacks(id) {
    errorCallbacks.uncaughtException = (error) =>
      this.client.postInvocationError(id, error).then(() => process.exit(129));
    errorCallbacks.unhandledRejection = (error) =>
      this.client.postInvocationError(id, error).then(() => process.exit(128));
  }

  async handleOnceStreaming() {
    const { id, bodyJson, headers } = await this.next();
    let waitForEmptyEventLoop = true;
    const ctx = {
      get callbackWaitsForEmptyEventLoop() {
        return waitForEmptyEventLoop;
      },
      set callbackWaitsForEmptyEventLoop(value) {
        waitForEmptyEventLoop = value;
      },
    };
    const { stream, done, fail } = createResponseStream(this.client, id, this.meta.highWaterMark);
    done.catch(() => {}); // observed below; never an unhandled rejection of ours
    const scheduleNext = () => {
      beforeExitListener = () => {};
      if (!waitForEmptyEventLoop) this.scheduleIteration();
      else {
        beforeExitListener = () => {
          beforeExitListener = () => {};
          setImmediate(() => this.scheduleIteration());
        };
      }
    };
    const ctxFail = (err) => {
      logError('Invoke Error', err);
      fail(err, scheduleNext);
    };
    beforeExitListener = () => this.scheduleIteration();
    try {
      const event = JSON.parse(bodyJson);
      const result = this.handler(event, stream, attachInvokeData(ctx, headers));
      if (!isPromise(result)) {
        ctxFail('Streaming does not support non-async handlers.');
        return;
      }
      if ((await result) !== undefined) console.warn('Streaming handlers ignore return values.');
      await done;
      if (!stream.writableFinished) {
        ctxFail('Response stream is not finished.');
        return;
      }
      scheduleNext();
    } catch (err) {
      ctxFail(err);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Start

function installProcessHandlers(client) {
  errorCallbacks.uncaughtException = (error) =>
    client.postInitError(error).then(() => process.exit(129));
  errorCallbacks.unhandledRejection = (error) =>
    client.postInitError(error).then(() => process.exit(128));
  process.on('uncaughtException', (error) => {
    logError('Uncaught Exception', error);
    fatal('uncaughtException', error);
  });
  process.on('unhandledRejection', (reason, promise) => {
    const error = new UnhandledPromiseRejection(reason, promise);
    logError('Unhandled Promise Rejection', error);
    fatal('unhandledRejection', error);
  });
  process.on('beforeExit', () => beforeExitListener());
}

async function main() {
  patchConsole();
  const client = new RuntimeClient(process.env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001');
  installProcessHandlers(client);
  const appRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  defaultNodePath(appRoot);
  let handler;
  let meta;
  try {
    handler = await loadHandler(appRoot, process.env._HANDLER ?? '');
    meta = handlerMetadata(handler);
  } catch (error) {
    // What the RIC's top-level `await run()` rejection does: an uncaught exception at init.
    logError('Uncaught Exception', error);
    fatal('uncaughtException', error);
    return;
  }
  warnOnCallbackHandler(meta);
  new Runtime(client, handler, meta).scheduleIteration();
}

main();
