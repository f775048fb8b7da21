"""Pipeline plans: stages of fertrain runs under one root, resumable (`fertrain pipeline`)."""

from fertrain.pipeline.plan import Plan, Stage, load_plan
from fertrain.pipeline.runner import PipelineResult, argv_of, plan_status, run_plan

__all__ = ["PipelineResult", "Plan", "Stage", "argv_of", "load_plan", "plan_status", "run_plan"]
