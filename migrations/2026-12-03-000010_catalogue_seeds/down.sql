DROP TABLE catalogue_seeds;
