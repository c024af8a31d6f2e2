"""`sdgraph batch`: one workflow, many jobs (sweeps, prompt lists), in this process or on a Ray cluster.

- `jobs`: sweep and prompt arguments to jobs with stable ids, every value validated up front.
- `runner`: one job on a warm executor, its files read back as bytes (the unit a worker runs).
- `manifest`: the JSON-lines record of finished jobs in the output folder; re-runs skip them.
- `dispatch`: skip what is done, run the rest on a backend, write files then manifest lines.
- `local`, `ray_runner`: the backends (this process; Ray actors, Ray imported only when asked for).
- `command`: the `sdgraph batch` command line on top of these.
"""
