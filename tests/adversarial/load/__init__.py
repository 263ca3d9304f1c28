"""The load test's own pieces: the locustfile and the settings of the processes it starts."""
