"""The read side: summaries of a study from its stored trials (front, progress), its
fitted scaling rules, and reports of them as files and terminal tables."""
