"""scalable_pipeline: hourly order processing whose volume swings 10x through the day."""
