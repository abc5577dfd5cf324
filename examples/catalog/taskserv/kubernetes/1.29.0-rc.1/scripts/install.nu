#!/usr/bin/env nu
# Installs kubernetes 1.29.0-rc.1
def main [] { print "installing kubernetes 1.29.0-rc.1" }
