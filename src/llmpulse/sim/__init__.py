"""A real HTTP simulator of the OpenAI, Anthropic and Gemini APIs for tests and benchmarks."""

from llmpulse.sim.scenario import ModelBehavior, Scenario, ScenarioError, load_scenario
from llmpulse.sim.server import SimServer

__all__ = ["ModelBehavior", "Scenario", "ScenarioError", "SimServer", "load_scenario"]
