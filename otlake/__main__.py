from otlake.cli import run

run()
