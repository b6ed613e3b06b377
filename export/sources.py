"""Model sources the export layer adds to every command's model arguments (entry point group
`mobile_sdk.model_sources`): `--supernet DIR` picks a sub-network of a trained supernet."""
from __future__ import annotations


class SupernetSource:
    help = "a trained supernet: its base model with the --plan sub-network"

    @staticmethod
    def load(path, step_plans):
        from export.nas.supernet import supernet_pipeline

        return supernet_pipeline(path, step_plans)


supernet = SupernetSource()
