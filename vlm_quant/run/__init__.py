"""One evaluate run, top to bottom: runner, quality pass, cost pass, instruments, crash safety, ranks."""
