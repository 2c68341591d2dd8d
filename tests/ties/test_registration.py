"""The lazy registrations name every merger class the engine defines."""


def test_every_merger_registered_by_lazy_reference():
    from plinth.plugins import load_plugins
    from plinth_ties.mergers import MERGERS

    pm = load_plugins(refresh=True)
    assert set(pm.components["merger"]) >= set(MERGERS)
    for name, cls in MERGERS.items():
        assert pm.get("merger", name) is cls
