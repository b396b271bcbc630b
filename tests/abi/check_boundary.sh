#!/usr/bin/env bash
# libcoffer's public `int` functions return public status codes, never the tree's coffer_err:
# each one's body must be the single line `return esdk_status(...);` (see src/esdk/status.c).
# A public function written any other way fails here, before a caller sees a server enum position.
# usage: check_boundary.sh src/esdk
set -euo pipefail
dir=${1:?usage: check_boundary.sh src/esdk}
perl -0777 -e '
    my $bad = 0;
    my $n = 0;
    for my $f (@ARGV) {
        open my $fh, "<", $f or die "$f: $!";
        local $/;
        my $src = <$fh>;
        while ($src =~ /^int (coffer_\w+)\([^)]*\)\n\{\n(.*?)^\}/msg) {
            my ($name, $body) = ($1, $2);
            $n++;
            next if $body =~ /\A\s*return esdk_status\([^;]*\);\s*\z/s;
            print STDERR "check_boundary: $f: $name does not return through esdk_status\n";
            $bad = 1;
        }
    }
    die "check_boundary: no public int functions found\n" unless $n;
    print "check_boundary: $n public int functions, all through esdk_status\n" unless $bad;
    exit $bad;
' "$dir"/*.c
