from setuptools import find_packages, setup

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
        "dagster-postgres==0.29.27",
        "psycopg2-binary>=2.9,<3",
        "pandas>=2.2,<4",
        "pyarrow>=15,<27",
        "psutil>=5.9,<8",
        "rich>=13,<16",
        "plotly>=5.20,<8",
        "prometheus_client>=0.20,<1",
        "PyYAML>=6,<7",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "playwright>=1.40,<2"],
        "lint": ["ruff==0.17.6", "mypy==2.4.1", "pandas-stubs==3.1.0.261029"],
        # Celery workers (README "Past one machine"): RabbitMQ through amqp, a celery dependency; Redis via redis.
        "celery": ["dagster-celery==0.29.27", "redis>=5,<9"],
    },
    entry_points={"console_scripts": ["scalable-pipeline=scalable_pipeline.cli:main"]},
)
