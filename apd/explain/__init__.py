"""``apd explain``: why would apd answer this request so? A dry run of the configured checks
against the live store, with what each one looked up, which one decided, and the answer.

``request`` rebuilds the request (policy attributes, flags or a Postfix log line), ``runner``
runs the checks inside rolled-back transactions and records their statements and log lines,
``render`` prints the result as text or JSON, ``command`` is the command line.
"""
