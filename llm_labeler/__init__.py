"""llm_labeler package."""
