"""GetParameter and GetParameters read from a cache of parsed parameter records: on one node a
read never sees less than what was acknowledged before it started, whatever the write (a new
version, a label moved, a deletion, a parameter made again under the same name), also with a
writer and readers racing on several connections.
"""
import unittest

from botocore.exceptions import ClientError

from harness import ServerTestCase, readers_never_go_back


class SsmCacheTest(ServerTestCase):
    def test_every_write_is_read_back_at_once(self):
        ssm = self.server.client("ssm")
        ssm.put_parameter(Name="/cache/p", Value="v1", Type="String")
        self.assertEqual(ssm.get_parameter(Name="/cache/p")["Parameter"]["Value"], "v1")
        for i in range(2, 6):
            ssm.put_parameter(Name="/cache/p", Value="v%d" % i, Type="String", Overwrite=True)
            p = ssm.get_parameter(Name="/cache/p")["Parameter"]
            self.assertEqual((p["Value"], p["Version"]), ("v%d" % i, i))
            got = ssm.get_parameters(Names=["/cache/p"])["Parameters"]
            self.assertEqual([x["Value"] for x in got], ["v%d" % i])
        ssm.label_parameter_version(Name="/cache/p", ParameterVersion=2, Labels=["stable"])
        self.assertEqual(ssm.get_parameter(Name="/cache/p:stable")["Parameter"]["Value"], "v2")
        ssm.label_parameter_version(Name="/cache/p", ParameterVersion=4, Labels=["stable"])
        self.assertEqual(ssm.get_parameter(Name="/cache/p:stable")["Parameter"]["Value"], "v4")
        ssm.unlabel_parameter_version(Name="/cache/p", ParameterVersion=4, Labels=["stable"])
        with self.assertRaises(ClientError) as cm:
            ssm.get_parameter(Name="/cache/p:stable")
        self.assertEqual(cm.exception.response["Error"]["Code"], "ParameterNotFound")  # as AWS: an unknown label
        ssm.delete_parameter(Name="/cache/p")
        with self.assertRaises(ClientError) as cm:
            ssm.get_parameter(Name="/cache/p")
        self.assertEqual(cm.exception.response["Error"]["Code"], "ParameterNotFound")
        ssm.put_parameter(Name="/cache/p", Value="again", Type="String")
        p = ssm.get_parameter(Name="/cache/p")["Parameter"]
        self.assertEqual((p["Value"], p["Version"]), ("again", 1))
        ssm.delete_parameters(Names=["/cache/p"])
        self.assertEqual(ssm.get_parameters(Names=["/cache/p"])["InvalidParameters"], ["/cache/p"])

    def test_racing_readers_never_go_back(self):
        ssm = self.server.client("ssm")
        ssm.put_parameter(Name="/cache/race", Value="0", Type="String")
        errors = readers_never_go_back(
            self.server, "ssm",
            lambda c, i: c.put_parameter(Name="/cache/race", Value=str(i), Type="String", Overwrite=True),
            lambda c: int(c.get_parameter(Name="/cache/race")["Parameter"]["Value"]))
        self.assertEqual(errors, [])
        self.assertEqual(ssm.get_parameter(Name="/cache/race")["Parameter"]["Value"], "40")


if __name__ == "__main__":
    unittest.main()
