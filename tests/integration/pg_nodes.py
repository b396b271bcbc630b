"""Two cofferd nodes sharing one PostgreSQL database, as a multi-node deployment runs them: the
second node's data dir is a copy of the first's (same root key, TLS CA and credentials), both
started with --store postgres://.... A test class deriving from TwoNodes gets node1 and node2 on a
throw-away cluster (pg_cluster.py) of its own database DB, started with ARGS; it is skipped when
the PostgreSQL server binaries are missing.
"""
import os
import shutil
import tempfile
import unittest

import pg_cluster
from harness import Cofferd, stop_checked


def copy_data_dir(src):
    """A second node's data dir: root key, TLS CA and credentials, not the audit trail or log."""
    dst = tempfile.mkdtemp(prefix="coffer-node2-")
    for name in os.listdir(src):
        if name in ("audit", "cofferd.log"):
            continue
        path = os.path.join(src, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(dst, name))
        else:
            shutil.copy2(path, os.path.join(dst, name))
    return dst


class TwoNodes(unittest.TestCase):
    DB = "coffer_nodes"
    ARGS = ("--quota-crypto-rps", "0")

    @classmethod
    def setUpClass(cls):
        reason = pg_cluster.unavailable_reason()
        if reason:
            raise unittest.SkipTest("no PostgreSQL for the multi-node tests: %s" % reason)
        cls.cluster = pg_cluster.PgCluster().start()
        cls.node1 = cls.node2 = None
        cls.dir2 = None
        try:
            cls.url = cls.cluster.createdb(cls.DB)
            cls.node1 = Cofferd(extra_args=cls.ARGS, store=cls.url).start()
            cls.dir2 = copy_data_dir(cls.node1.data_dir)
            cls.node2 = Cofferd(data_dir=cls.dir2, extra_args=cls.ARGS, store=cls.url).start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for node in (cls.node1, cls.node2):
                if node is not None:
                    stop_checked(node)
        finally:
            if cls.dir2:
                shutil.rmtree(cls.dir2, ignore_errors=True)
            cls.cluster.stop()
