"""The services: the only code that changes build state (``builds``), creates builds
(``trigger``), leases stages (``scheduler``), stores logs (``logs``), decides what secrets a
stage gets (``secrets``), and publishes events (``events``, ``signals``)."""
