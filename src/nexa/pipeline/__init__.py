"""Declarative pipelines (YAML) run as a DAG of stages, each cached by the hash of its code, parameters and inputs."""
