"""The demo prints lines that a new shell can paste: mpirun as the absolute path it resolved to."""
def test_the_demo_prints_mpirun_as_an_absolute_path_so_a_new_shell_can_paste_it(tmp_path, monkeypatch):
    from dsgd.demo import pasteable
    (tmp_path / "mpirun").write_text("#!/bin/sh\n")
    (tmp_path / "mpirun").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pasteable(["mpirun", "-np", "2", "python"]) == [str(tmp_path / "mpirun"), "-np", "2", "python"]
    assert pasteable(["/opt/x/mpirun", "-np", "2"]) == ["/opt/x/mpirun", "-np", "2"]
