"""voiced.agent."""
