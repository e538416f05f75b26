"""Running things once per process: the session (runners, caches), the eager side, the target
side, the export cache and users' own artifacts (``--artifact``)."""
