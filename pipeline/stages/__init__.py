"""Pipeline stages. Each module exposes `run(job, ctx) -> Job`; the order lives in the runner."""
