"""The scheduler: DAG bookkeeping. It decides which jobs are ready, skips, retries and
cancels, and publishes ready jobs to their executor pools."""
