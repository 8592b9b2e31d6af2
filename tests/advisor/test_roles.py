"""Column roles come from what names say, not from a list of known logs; a TOML file overrides them."""

from __future__ import annotations

import pytest

from advisor.models import AdvisorError
from advisor.roles import assign_roles, infer_role, load_roles_file, main_loss, words


def test_words_split_punctuation_and_camel_case():
    assert words("val/loss") == ["val", "loss"]
    assert words("trainLoss_epoch") == ["train", "loss", "epoch"]
    assert words("Valid MSE") == ["valid", "mse"]
    assert words("lr-Adam/pg1") == ["lr", "adam", "pg1"]


@pytest.mark.parametrize(
    "name, role, hib",
    [
        ("loss", "loss", False),
        ("train_loss", "loss", False),
        ("val/loss", "val_loss", False),
        ("validation_loss", "val_loss", False),
        ("eval_loss", "val_loss", False),
        ("valLoss", "val_loss", False),
        ("grad_norm/max", "grad_norm", False),
        ("gradnorm_max", "grad_norm", False),
        ("train/grad_norm", "grad_norm", False),
        ("gradient_norm", "grad_norm", False),
        ("learning_rate", "lr", False),
        ("lr-AdamW", "lr", False),
        ("train/learning_rate", "lr", False),
        ("vq/usage", "usage", True),
        ("codebook_utilization", "usage", True),
        ("codes/perplexity", "usage", True),
        ("vq/dead_codes", "usage", False),
        ("rank/context", "rank", True),
        ("eff_rank_ctx", "rank", True),
        ("rankme", "rank", True),
        ("accuracy", "train_metric", True),
        ("val_accuracy", "val_metric", True),
        ("eval_macro_f1", "val_metric", True),
        ("val_mean_io_u", "val_metric", True),
        ("dice_coef", "train_metric", True),
        ("eval_wer", "val_metric", False),
        ("val/cer", "val_metric", False),
        ("eval_runtime", "other", False),
        ("eval_samples_per_second", "other", False),
        ("_runtime", "other", False),
        ("total_flos", "other", False),
        ("step", "step", False),
        ("_step", "step", False),
        ("global_step", "step", False),
        ("trainer/global_step", "step", False),
        ("epoch", "epoch", False),
        ("train/epoch", "epoch", False),
    ],
)
def test_infer_role_reads_names_as_words(name, role, hib):
    guess = infer_role(name)
    assert (guess.role, guess.higher_is_better) == (role, hib)


def test_namespace_with_a_total_makes_its_members_components():
    names = ["step", "epoch", "train/infonce", "train/sigreg", "train/invariance", "train/relational", "train/total",
             "val/loss", "grad_norm/mean", "grad_norm/max", "vq/usage", "rank/context", "rank/target"]
    roles = assign_roles(names)
    for term in ("train/infonce", "train/sigreg", "train/invariance", "train/relational"):
        assert (roles[term].role, roles[term].component_of) == ("loss_component", "train/total")
    assert roles["train/total"].role == "loss"
    assert roles["val/loss"].role == "val_loss"
    assert {roles[n].role for n in ("grad_norm/mean", "grad_norm/max")} == {"grad_norm"}


def test_renamed_jepa_columns_get_the_same_roles():
    names = ["global_step", "epoch", "loss/infonce_term", "loss/sigreg_term", "loss/invariance_term",
             "loss/relational_term", "loss/total", "validation_loss", "gradnorm_mean", "gradnorm_max",
             "codebook_utilization", "eff_rank_ctx", "eff_rank_tgt"]
    roles = assign_roles(names)
    assert roles["loss/relational_term"].component_of == "loss/total"
    assert roles["loss/total"].role == "loss"
    assert roles["validation_loss"].role == "val_loss"
    assert roles["gradnorm_max"].role == "grad_norm"
    assert roles["codebook_utilization"].role == "usage"
    assert roles["eff_rank_ctx"].role == "rank"
    assert roles["global_step"].role == "step"


@pytest.mark.parametrize(
    "names, component, total",
    [
        (["loss", "loss_kl", "loss_recon"], "loss_kl", "loss"),
        (["loss", "kl_loss", "recon_loss", "val_loss"], "recon_loss", "loss"),
        (["loss", "output_1_loss", "output_2_loss", "val_loss", "val_output_1_loss"], "output_1_loss", "loss"),
        (["loss", "output_1_loss", "val_loss", "val_output_1_loss"], "val_output_1_loss", "val_loss"),
        (["total_loss", "recon_loss", "kl_loss"], "kl_loss", "total_loss"),
        (["loss", "loss/kl", "loss/recon"], "loss/kl", "loss"),
        (["train/loss", "train/kl", "train/accuracy"], "train/kl", "train/loss"),
    ],
)
def test_affixed_and_nested_loss_terms_are_components(names, component, total):
    roles = assign_roles(names)
    assert (roles[component].role, roles[component].component_of) == ("loss_component", total)


def test_things_that_are_not_components_stay_what_they_are():
    roles = assign_roles(["loss", "val_loss", "mae", "val_mae", "accuracy", "mean_io_u", "lr"])
    assert roles["val_loss"].role == "val_loss"  # a split, not a term
    assert roles["mae"].role == "train_metric"  # a loss function's name next to "loss" is a metric
    assert roles["val_mae"].role == "val_metric"
    assert roles["mean_io_u"].role == "train_metric"
    lightning = assign_roles(["train_loss_step", "train_loss_epoch", "val_loss", "epoch", "step"])
    assert lightning["train_loss_step"].role == lightning["train_loss_epoch"].role == "loss"
    hf = assign_roles(["train/loss", "train/grad_norm", "train/learning_rate", "train/epoch", "train/global_step",
                       "train/mfu", "eval/loss", "eval/runtime"])
    assert hf["train/mfu"].role == "other"
    assert hf["eval/runtime"].role == "other"
    assert hf["train/global_step"].role == "step"


def test_loss_functions_stand_in_for_the_loss_when_nothing_is_named_loss():
    roles = assign_roles(["Test MSE", "Train loss", "Valid MSE", "epoch", "step"])
    assert roles["Valid MSE"].role == "val_loss"
    assert roles["Train loss"].role == "loss"
    assert roles["Test MSE"].role == "other"  # a test split only stands in for validation when there is none
    only_test = assign_roles(["loss", "test_loss", "test_acc"])
    assert only_test["test_loss"].role == "val_loss"
    assert only_test["test_acc"].role == "val_metric"


def test_main_loss_prefers_the_plainest_name():
    roles = assign_roles(["train_loss_step", "train_loss_epoch", "loss_ema"])
    assert main_loss(roles, "loss", {"train_loss_step": 900, "train_loss_epoch": 10}) == "train_loss_step"


def test_roles_file_overrides(tmp_path):
    f = tmp_path / "roles.toml"
    f.write_text(
        '[roles]\n"my col" = "val_loss"\n"bleu dev" = "val_metric"\n'
        '[components]\n"a" = "total"\n'
        '[higher_is_better]\n"bleu dev" = true\n'
        '[settings]\nstep = "iteration"\nepoch = "ep"\nclip_value = 1.0\nignore = ["gpu_temp"]\n'
    )
    o = load_roles_file(f)
    roles = assign_roles(["my col", "bleu dev", "a", "total", "iteration", "ep"], o)
    assert roles["my col"].role == "val_loss"
    assert (roles["bleu dev"].role, roles["bleu dev"].higher_is_better) == ("val_metric", True)
    assert (roles["a"].role, roles["a"].component_of) == ("loss_component", "total")
    assert roles["iteration"].role == "step"
    assert roles["ep"].role == "epoch"
    assert o.clip_value == 1.0 and o.ignore == {"gpu_temp"}
    assert o.settings() == {"clip_value": 1.0}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[roles]\n"x" = "validation"\n', "is not one of"),
        ("[roles\n", "not valid TOML"),
        ('[colours]\n"x" = 1\n', "unknown section"),
        ('[settings]\nclip_value = "high"\n', "clip_value"),
        ('[higher_is_better]\n"x" = "yes"\n', "true or false"),
    ],
)
def test_bad_roles_files_raise_one_clear_sentence(tmp_path, text, fragment):
    f = tmp_path / "roles.toml"
    f.write_text(text)
    with pytest.raises(AdvisorError, match=fragment):
        load_roles_file(f)


def test_missing_roles_file_is_an_advisor_error(tmp_path):
    with pytest.raises(AdvisorError, match="does not exist"):
        load_roles_file(tmp_path / "nope.toml")
