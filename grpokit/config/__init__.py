"""The typed config sections of every command. Field comments are the CLI's --help (one help source).

`grpokit train` reads Config; `grpokit eval` and `grpokit sample` read EvalCommandConfig
(grpokit/cli/eval.py) and SampleCommandConfig (grpokit/cli/sample.py), built from the same
sections (model, data, rollout, reward) plus a section of their own. Load order: defaults <-
YAML file (--config: a path or a shipped recipe's name) <- command-line overrides. Every key is
checked: a typo is an error naming the key and the nearest valid one. validate() returns a
checked copy with derived defaults filled in.
"""


from grpokit.config.checks import (check_sampling, check_whole_groups, validate, with_preset_env,
                                   with_reward_defaults)
from grpokit.config.files import RECIPES, config_path, from_dict, load_yaml, shipped_recipes, to_dict
from grpokit.config.sections import (DEFAULT_LORA_TARGET, MODEL_DTYPES, MODEL_MODES, SHARDINGS, AlertsConfig,
                                     AlgoConfig, Config, DataConfig, DoctorConfig, EnvConfig, JsonMapping,
                                     LogConfig, ModelConfig, RewardConfig, RolloutConfig, TrainConfig,
                                     parse_json_mapping)

__all__ = ["AlertsConfig", "AlgoConfig", "Config", "DataConfig", "DoctorConfig", "EnvConfig", "JsonMapping",
           "LogConfig", "ModelConfig", "RewardConfig", "RolloutConfig", "TrainConfig", "DEFAULT_LORA_TARGET",
           "MODEL_DTYPES", "MODEL_MODES", "SHARDINGS", "RECIPES", "check_sampling", "check_whole_groups",
           "config_path", "from_dict", "load_yaml", "parse_json_mapping", "shipped_recipes", "to_dict",
           "validate", "with_preset_env", "with_reward_defaults"]
