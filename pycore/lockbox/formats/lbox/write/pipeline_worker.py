"""Entry point of a pipeline worker process:
``python -m lockbox.formats.lbox.write.pipeline_worker``."""

from lockbox.formats.lbox.write.pipeline import worker_main

if __name__ == "__main__":
    worker_main()
