"""The obligation generator: a complete product, one query per principal family."""

from __future__ import annotations

import pytest

from microverify.dsl.loader import load_text
from microverify.prover.obligations import Kind, generate

MODEL = """
type vmid = bv[{w}]
principal KServ
principal VM(v: vmid)
principal Sched
layer A {{
  state {{ x : map[vmid] -> bv[8] }}
  observe VM(v) {{ x[v] }}
  op f(v: vmid) by VM(v) {{ x[v] := 1 }}
  op g() by KServ {{ }}
  op h() by Sched {{ }}
}}
layer B {{
  state {{ y : bool }}
  op k() by KServ {{ }}
}}
"""


@pytest.mark.parametrize("width", [1, 4, 16])
def test_generator_is_the_full_product_independent_of_the_family_size(width: int) -> None:
    obs = generate(load_text(MODEL.format(w=width), "t.mv"))
    ops, principals = 4, 3
    per_layer = 2  # VAC of the invariant, INIT
    views = 1  # VIEW per non-empty `observe` block: A's of VM
    per_op = 2 + 2 + 3 * principals  # VAC, INV, OC, DC, then WSC/LR/DR per family
    assert len(obs) == 2 * per_layer + views + ops * per_op
    assert len({ob.id for ob in obs}) == len(obs)
    assert [ob.id for ob in obs if ob.kind is Kind.VIEW] == ["A/VIEW/VM"]
    wsc = [ob for ob in obs if ob.kind is Kind.WSC and ob.op == "f"]
    assert sorted(ob.observer or "" for ob in wsc) == ["KServ", "Sched", "VM"]


REFINED = MODEL.format(w=2).replace("  op k() by KServ { }", "  op k() by KServ { }\n  op m(b: bool) by KServ { y := read o }") + """
oracle o : bool from KServ
layer C refines B {{
  state {{ z : bool; t : bool }}
  abstraction {{ y = z }}
  op k() by KServ {{ }}
  op tick() by KServ {{ t := !t }}
  op n() by KServ implements m(z) {{
    bind o = t
    z := t
  }}
}}
""".replace("{{", "{").replace("}}", "}")


def test_every_kind_is_generated() -> None:
    obs = generate(load_text(REFINED, "t.mv"))
    assert {ob.kind for ob in obs} == set(Kind)


def test_unwinding_only_at_the_top_and_refinement_per_mapped_or_stutter_op() -> None:
    """R-ARGS only where an upper argument reads the state (`m(z)`, not `k()`), R-BIND only
    where the operation binds."""
    obs = generate(load_text(REFINED, "t.mv"))
    c = {ob.id for ob in obs if ob.layer == "C"}
    assert c == {"C/VAC", "C/INIT", "C/VAC/k", "C/INV/k", "C/VAC/tick", "C/INV/tick",
                 "C/R-INIT", "C/R-INV", "C/R-STEP/k", "C/R-ORACLE/k", "C/R-DOM/k",
                 "C/R-STUTTER/tick", "C/OC/tick", "C/DC/tick", "C/R-OBS/KServ", "C/R-OBS/VM", "C/R-OBS/Sched",
                 "C/VAC/n", "C/INV/n", "C/R-STEP/n", "C/R-ORACLE/n", "C/R-DOM/n", "C/R-ARGS/n", "C/R-BIND/n"}
    assert any(ob.id == "B/WSC/k/VM" for ob in obs)


def test_ids_name_layer_kind_op_and_observer() -> None:
    obs = generate(load_text(MODEL.format(w=2), "t.mv"))
    ids = {ob.id for ob in obs}
    assert {"A/VAC", "A/INIT", "A/VAC/f", "A/INV/f", "A/OC/f", "A/DC/f", "A/WSC/f/VM",
            "A/LR/f/KServ", "A/DR/h/Sched"} <= ids
