#!/usr/bin/env nu
# Installs local 0.3.0
def main [] { print "installing local 0.3.0" }
