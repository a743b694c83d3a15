"""bastion.crypto"""
