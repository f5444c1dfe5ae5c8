"""The wire of the AWS APIs lambdad serves, read once: botocore's service models (``lambda``,
``scheduler``) drive decoding and checks; every operation is decoded by the one decoder, the
model it belongs to being a parameter.

- :mod:`.model` loads the model and describes each operation's HTTP binding;
- :mod:`.values` checks JSON values against shapes (types first, then constraints);
- :mod:`.decode` turns one HTTP request into an operation's typed request value;
- :mod:`.headers` reads the invoke headers (invocation type, client context, log type).
"""
