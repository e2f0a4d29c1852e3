"""Reliability tests (issue 5): generated and hostile input, hostile config, kills, database faults, races."""
