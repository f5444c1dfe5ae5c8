"""The Lambda API's wire, read once: botocore's ``lambda`` model drives decoding and checks.

- :mod:`.model` loads the model and describes each operation's HTTP binding;
- :mod:`.values` checks JSON values against shapes (types first, then constraints);
- :mod:`.decode` turns one HTTP request into an operation's typed request value;
- :mod:`.headers` reads the invoke headers (invocation type, client context, log type).
"""
