"""Architecture search, laid out like once-for-all's nas/: latency tables and the block decomposition,
the efficiency predictor (latency, memory), the accuracy predictor (the supernet's shared-weight loss),
the search algorithm and the supernet it is trained as."""
