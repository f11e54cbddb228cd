"""The reference solutions as runnable pipelines, one package each (face_privacy, ...)."""
