from setuptools import find_packages, setup

CELERY = ["dagster-celery==0.29.27", "redis>=5,<9"]

setup(
    name="scalable_pipeline",
    version="0.1.0",
    description="Dagster asset-based pipeline for hourly data whose volume swings 10x through the day.",
    packages=find_packages(exclude=["scalable_pipeline_tests*", "bench*"]),
    package_data={"scalable_pipeline": ["pipelines.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-dg-cli==1.13.27",  # `dg dev`, the successor of `dagster dev`
        "dagster-postgres==0.29.27",
        "psycopg2-binary>=2.9,<3",
        "pandas>=2.2,<4",
        "pyarrow>=15,<27",
        "deltalake==1.6.6",  # the published hours as Delta tables (delta-rs: no JVM, no server)
        "psutil>=5.9,<8",
        "rich>=13,<16",
        "plotly>=5.20,<8",
        "prometheus_client>=0.20,<1",
        "PyYAML>=6,<7",
        "SQLAlchemy>=2,<3",  # the instance's storage errors, named when a run cannot write its events
    ],
    extras_require={
        # The test extra installs every import of the suite, the Celery extra's included (its settings tests
        # need no broker); tests of services and the browser skip with their reason when none is configured.
        # Readers of the Delta tables that the tests point at them: Polars, and DuckDB with its delta extension
        # (loaded by path from its package: nothing is downloaded at run time).
        "test": [
            "pytest>=8,<10",
            "playwright>=1.40,<2",
            *CELERY,
            "polars>=1.30,<3",
            "duckdb==1.5.5",
            "duckdb-extension-delta==1.5.5",
        ],
        "lint": ["ruff==0.17.6", "mypy==2.4.1", "pandas-stubs==3.1.0.261029", "import-linter==2.16", "vulture==2.16"],
        "docs": ["mkdocs-material==9.8.2"],
        # Celery workers (docs: deployment): RabbitMQ through amqp, a celery dependency; Redis via redis.
        "celery": CELERY,
    },
    entry_points={"console_scripts": ["scalable-pipeline=scalable_pipeline.cli.main:main"]},
)
