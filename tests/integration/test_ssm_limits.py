"""SSM Parameter Store per-account parameter counts (cofferd --ssm-max-standard and
--ssm-max-advanced, here 3 and 2): ParameterLimitExceeded past them, by tier; overwrites do not
count, deletes free places, moving to Advanced moves the count; parallel creates racing for the
last places never overshoot.
"""
import threading

from botocore.exceptions import ClientError

from harness import ServerTestCase


class SsmLimitsTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--ssm-max-standard", "3", "--ssm-max-advanced", "2")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ssm = cls.server.client("ssm")

    def put(self, name, **kw):
        return self.ssm.put_parameter(Name=name, Value="v", Type="String", **kw)

    def test_limits(self):
        for i in range(3):
            self.put("/lim/s%d" % i)
        code, msg = self.err(self.put, name="/lim/s3")
        self.assertEqual(code, "ParameterLimitExceeded")
        self.assertEqual(msg, "You have reached the maximum number of standard parameters for this AWS account and "
                              "Region (3). To add more parameters, either delete existing parameters or upgrade to "
                              "the advanced-parameter tier (charges apply).")
        # an overwrite is no new parameter
        self.ssm.put_parameter(Name="/lim/s0", Value="w", Overwrite=True)
        # the advanced tier counts on its own
        self.put("/lim/a0", Tier="Advanced")
        self.put("/lim/a1", Tier="Advanced")
        code, msg = self.err(self.put, name="/lim/a2", Tier="Advanced")
        self.assertEqual(code, "ParameterLimitExceeded")
        self.assertIn("advanced parameters for this AWS account and Region (2)", msg)
        # moving up to Advanced needs an advanced place, and frees a standard one
        code, _ = self.err(self.ssm.put_parameter, Name="/lim/s0", Value="x", Overwrite=True, Tier="Advanced")
        self.assertEqual(code, "ParameterLimitExceeded")
        self.ssm.delete_parameter(Name="/lim/a1")
        self.ssm.put_parameter(Name="/lim/s0", Value="x", Overwrite=True, Tier="Advanced")
        self.put("/lim/s3")
        self.assertEqual(self.err(self.put, name="/lim/s4")[0], "ParameterLimitExceeded")
        # deleting frees places, several at once
        r = self.ssm.delete_parameters(Names=["/lim/s1", "/lim/s2", "/lim/nope"])
        self.assertEqual(r["DeletedParameters"], ["/lim/s1", "/lim/s2"])
        self.put("/lim/s5")
        self.put("/lim/s6")
        self.assertEqual(self.err(self.put, name="/lim/s7")[0], "ParameterLimitExceeded")
        # a refused create left nothing behind
        self.assertEqual(self.err(self.ssm.get_parameter, Name="/lim/s7")[0], "ParameterNotFound")

        # parallel creates racing for the free places: exactly that many succeed
        self.ssm.delete_parameters(Names=["/lim/s3", "/lim/s5", "/lim/s6"])
        results = []

        def create(i):
            client = self.server.client("ssm")
            try:
                client.put_parameter(Name="/lim/race/p%d" % i, Value="v", Type="String")
                results.append("ok")
            except ClientError as e:
                results.append(e.response["Error"]["Code"])

        threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results), ["ParameterLimitExceeded"] * 9 + ["ok"] * 3)
        self.assertEqual(len(self.ssm.get_parameters_by_path(Path="/lim/race")["Parameters"]), 3)
