"""Packaging a student as a teacher-free bundle and verifying it, with every teacher deleted, against the retention gate."""
