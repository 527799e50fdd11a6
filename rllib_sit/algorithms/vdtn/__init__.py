"""VD+TN: offline decentralized MARL with value deviation and transition normalization (Jiang & Lu),
on BCQ (``VDTN_BCQ``, the paper's MABCQ), CQL (``VDTN_CQL``) and TD3+BC (``VDTN_TD3BC``)."""

from rllib_sit.algorithms.vdtn.vdtn import (VDTN, VDTN_BCQ, VDTN_CQL, VDTN_TD3BC, VDTNBCQConfig, VDTNConfig,
                                            VDTNCQLConfig, VDTNTD3BCConfig)

__all__ = ["VDTN", "VDTN_BCQ", "VDTN_CQL", "VDTN_TD3BC", "VDTNConfig", "VDTNBCQConfig", "VDTNCQLConfig",
           "VDTNTD3BCConfig"]
