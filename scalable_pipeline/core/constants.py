"""Names and shapes shared by every module: partitions, group, record schema, rules."""

JOB_NAME = "scalable_data_processing"

ORDER_COLUMNS = ["order_id", "event_time", "customer_id", "region", "amount", "status"]
VALID_STATUSES = ("placed", "paid", "shipped", "cancelled")
REGIONS = (
    "north",
    "south",
    "east",
    "west",
    "central",
    "northeast",
    "southwest",
    "online",
)

# Peak hours of the day profile: 09:00 to 16:59 UTC (the 09-17 business window).
PEAK_HOURS = range(9, 17)

# Pool of the chunk steps: a slot limit set for it (`dagster instance concurrency set chunk_processing N`,
# or `concurrency.pools.default_limit` in dagster.yaml) caps how many run at once, across runs.
CHUNK_POOL = "chunk_processing"

DATA_DIR_ENV = "SCALABLE_PIPELINE_DATA_DIR"
LANDING_DIR_ENV = "SCALABLE_PIPELINE_LANDING_DIR"
# Run tags Dagster sets on partitioned runs (a single partition, or a range in one run).
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
# Run tag naming the pipeline whose sensor launched the run (alerts name it).
PIPELINE_TAG = "scalable_pipeline/pipeline"

# The first hour of an entry without `start` (the shipped pipeline's too): recent, so the UI's by-partition
# plots (recent partitions) show the hours the README runs. Each pipeline's hours begin at its own `start`.
DEFAULT_START = "2026-01-01-00:00"
