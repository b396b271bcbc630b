"""SSM Parameter Store Intelligent-Tiering against the account's parameter counts (cofferd
--ssm-max-standard 2): with the standard places taken, Intelligent-Tiering creates an Advanced
parameter (the user guide's third reason, next to values over 4 KB and policies), while an
explicit Standard is refused with ParameterLimitExceeded and an overwrite of a standard
parameter keeps working (it takes no new place) and keeps its tier.
"""

from harness import ServerTestCase

LIMIT_MSG = ("You have reached the maximum number of standard parameters for this AWS account and Region (2). "
             "To add more parameters, either delete existing parameters or upgrade to the advanced-parameter "
             "tier (charges apply).")


class SsmTieringTest(ServerTestCase):
    extra_args = ("--quota-crypto-rps", "0", "--ssm-max-standard", "2", "--ssm-max-advanced", "5")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ssm = cls.server.client("ssm")

    def tier(self, name):
        d = self.ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"]
        return d[0]["Tier"]

    def test_intelligent_tiering_at_the_standard_limit(self):
        # places left: Intelligent-Tiering stays Standard
        r = self.ssm.put_parameter(Name="/it/s0", Value="v", Type="String", Tier="Intelligent-Tiering")
        self.assertEqual(r["Tier"], "Standard")
        self.ssm.put_parameter(Name="/it/s1", Value="v", Type="String")
        # the standard places are taken: an explicit Standard is refused...
        code, msg = self.err(self.ssm.put_parameter, Name="/it/s2", Value="v", Type="String", Tier="Standard")
        self.assertEqual((code, msg), ("ParameterLimitExceeded", LIMIT_MSG))
        code, _ = self.err(self.ssm.put_parameter, Name="/it/s2", Value="v", Type="String")
        self.assertEqual(code, "ParameterLimitExceeded")
        # ...and Intelligent-Tiering creates an Advanced parameter
        r = self.ssm.put_parameter(Name="/it/a0", Value="small", Type="String", Tier="Intelligent-Tiering")
        self.assertEqual(r, {"Version": 1, "Tier": "Advanced", "ResponseMetadata": r["ResponseMetadata"]})
        self.assertEqual(self.tier("/it/a0"), "Advanced")
        self.assertEqual(self.ssm.get_parameter(Name="/it/a0")["Parameter"]["Value"], "small")
        # SecureString too
        r = self.ssm.put_parameter(Name="/it/a1", Value="hidden", Type="SecureString", Tier="Intelligent-Tiering")
        self.assertEqual(r["Tier"], "Advanced")
        self.assertEqual(self.ssm.get_parameter(Name="/it/a1", WithDecryption=True)["Parameter"]["Value"], "hidden")
        # overwriting a standard parameter at the full count works and stays Standard, with or
        # without Intelligent-Tiering
        r = self.ssm.put_parameter(Name="/it/s0", Value="w", Overwrite=True)
        self.assertEqual((r["Version"], r["Tier"]), (2, "Standard"))
        r = self.ssm.put_parameter(Name="/it/s1", Value="w", Overwrite=True, Tier="Intelligent-Tiering")
        self.assertEqual((r["Version"], r["Tier"]), (2, "Standard"))
        r = self.ssm.put_parameter(Name="/it/s1", Value="x", Overwrite=True, Tier="Standard")
        self.assertEqual((r["Version"], r["Tier"]), (3, "Standard"))
        self.assertEqual(self.tier("/it/s1"), "Standard")
        # the advanced parameters took no standard place: a freed place is used again
        self.ssm.delete_parameter(Name="/it/s1")
        r = self.ssm.put_parameter(Name="/it/s3", Value="v", Type="String", Tier="Intelligent-Tiering")
        self.assertEqual(r["Tier"], "Standard")
        code, _ = self.err(self.ssm.put_parameter, Name="/it/s4", Value="v", Type="String")
        self.assertEqual(code, "ParameterLimitExceeded")
        # a refused create left nothing behind
        self.assertEqual(self.err(self.ssm.get_parameter, Name="/it/s4")[0], "ParameterNotFound")
