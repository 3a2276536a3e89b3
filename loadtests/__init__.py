"""Load tests with locust: what each variant costs (latency, throughput, bytes) and loses (online accuracy).

``python -m loadtests run`` (or ``make loadtest``) starts the service, drives it with ``locustfile.py``
for a bounded time and writes a report folder; the modules are small so each can be read on its own:
``options`` (the environment contract between the runner and locust), ``payloads`` (real digits as
request bodies), ``service`` (starting and scraping the service), ``report`` and ``plots``.
"""
