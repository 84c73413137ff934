"""Project tools run by ./dev (not part of the llmpulse package)."""
