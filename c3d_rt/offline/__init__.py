"""Offline video understanding: every window of recorded videos through the engine at its batched speed
(``c3d-rt predict``: window labels, segments, video-level labels; ``c3d-rt features``: fc6/fc7 per window)."""
