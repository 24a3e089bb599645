"""The watch loop's default timings, apart from the loop so that ``abfluss --help`` can show them
without importing the loop (and with it DuckDB, Arrow and the detections)."""

#: Seconds between detection runs.
DEFAULT_EVERY = 30
#: Seconds of data (back from the newest record) each detection run looks at.
DEFAULT_WINDOW = 3600
#: Seconds without records after which a sensor is reported silent.
DEFAULT_SILENT_AFTER = 300
#: Seconds per capture file: the delay before a packet's flow is stored.
DEFAULT_ROTATE = 10
